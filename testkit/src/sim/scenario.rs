//! What a run is made of: the cluster's setup ([`SimConfig`]), the steps of a
//! schedule ([`Step`]), the seeded random generator ([`SimRng`]) and
//! [`random_schedule`].

use std::time::Duration;

/// A small seeded random generator (splitmix64): the simulator's only source
/// of randomness.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// How the simulated cluster is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// The app id every worker shares.
    pub app_id: String,
    /// Seed of the run ([`SimRng`] for the input feed and random schedules).
    pub seed: u64,
    /// Partition count of topics the broker creates implicitly.
    pub partitions: u32,
    /// The workers' `broker_commit_interval`.
    pub commit_interval: Duration,
    /// How long a silent (crashed) worker stays a group member.
    pub session_timeout: Duration,
    /// How long a member may take to acknowledge a revocation.
    pub rebalance_timeout: Duration,
    /// Virtual time each changelog read (group-less poll) takes, so recovery
    /// lasts long enough for rebalances to land in the middle of it.
    pub fetch_delay: Duration,
    /// [`Cluster::settle`] gives up after this much virtual time.
    ///
    /// [`Cluster::settle`]: super::Cluster::settle
    pub settle_limit: Duration,
    /// The workers' `table_standby_replicas`.
    pub standby_replicas: u32,
}

impl SimConfig {
    /// Defaults for app `app_id` and `seed`: 4 partitions, commits every
    /// second, 6 s sessions, 10 s rebalance timeout, 50 ms per changelog read,
    /// one standby replica.
    pub fn new(app_id: impl Into<String>, seed: u64) -> Self {
        SimConfig {
            app_id: app_id.into(),
            seed,
            partitions: 4,
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(6),
            rebalance_timeout: Duration::from_secs(10),
            fetch_delay: Duration::from_millis(50),
            settle_limit: Duration::from_secs(600),
            standby_replicas: 1,
        }
    }
}

/// One step of a schedule. Workers are numbered; worker `n` is named `w{n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start worker `n`: a new worker, or a restart (with its local store)
    /// of one that left or crashed. Nothing when it is running.
    Join(u8),
    /// Stop worker `n` gracefully (finish, flush, commit, leave the group).
    Leave(u8),
    /// Kill worker `n`: from now on nothing it does has an effect.
    Crash(u8),
    /// Start worker `a`, wait until it is reading changelogs (recovering),
    /// then start worker `b`: a rebalance in the middle of recovery.
    JoinWhileRecovering(u8, u8),
    /// Send this many input records from the feed.
    Send(u16),
    /// Let the cluster run for this many milliseconds of virtual time.
    Run(u32),
    /// Jump the clock this many milliseconds at once: every timer that was
    /// due fires late, as after a frozen process or a suspended machine.
    JumpClock(u32),
}

/// A random schedule for `workers` workers from `seed`, `len` steps long:
/// joins, leaves, crashes, restarts, sends, runs and clock jumps.
pub fn random_schedule(seed: u64, workers: u8, len: usize) -> Vec<Step> {
    let mut rng = SimRng::new(seed);
    let mut out = vec![Step::Join(0)];
    for _ in 1..len {
        let w = rng.below(u64::from(workers.max(1))) as u8;
        let step = match rng.below(20) {
            0..=3 => Step::Join(w),
            4 => Step::Leave(w),
            5..=6 => Step::Crash(w),
            7 => Step::JoinWhileRecovering(w, rng.below(u64::from(workers.max(1))) as u8),
            8..=11 => Step::Send(1 + rng.below(40) as u16),
            12 => Step::JumpClock(1 + rng.below(20_000) as u32),
            _ => Step::Run(1 + rng.below(5_000) as u32),
        };
        out.push(step);
    }
    out
}
