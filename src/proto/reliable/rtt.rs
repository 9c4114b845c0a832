//! The round-trip time estimate of one peer and the timeout it gives.

use std::time::Duration;

use super::config::Config;

/// RTT estimator per RFC 6298.
#[derive(Debug, Clone)]
pub(super) struct Rtt {
    srtt: Duration,
    rttvar: Duration,
    sampled: bool,
}

impl Rtt {
    pub(super) fn new(initial: Duration) -> Self {
        Rtt {
            srtt: initial,
            rttvar: initial / 2,
            sampled: false,
        }
    }

    pub(super) fn sample(&mut self, rtt: Duration) {
        if self.sampled {
            let diff = self.srtt.abs_diff(rtt);
            self.rttvar = (self.rttvar * 3 + diff) / 4;
            self.srtt = (self.srtt * 7 + rtt) / 8;
        } else {
            self.srtt = rtt;
            self.rttvar = rtt / 2;
            self.sampled = true;
        }
    }

    pub(super) fn rto(&self, config: &Config) -> Duration {
        let granularity = Duration::from_millis(1);
        let rto = self.srtt + (self.rttvar * 4).max(granularity) + config.max_ack_delay;
        rto.clamp(config.rto_min, config.rto_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rto_has_a_floor_and_follows_samples() {
        let config = Config {
            max_ack_delay: Duration::ZERO,
            ..Config::default()
        };
        let mut rtt = Rtt::new(config.initial_rtt);
        for _ in 0..20 {
            rtt.sample(Duration::from_micros(300));
        }
        assert_eq!(
            rtt.rto(&config),
            config.rto_min,
            "sub-millisecond LAN RTTs hit the floor"
        );
        for _ in 0..20 {
            rtt.sample(Duration::from_millis(200));
        }
        let rto = rtt.rto(&config);
        assert!(
            rto > Duration::from_millis(200) && rto < Duration::from_millis(300),
            "{rto:?}"
        );
        // The receiver's ACK delay is part of the timeout, so a delayed ACK
        // does not look like a loss.
        let with_delay = Config::default();
        assert_eq!(rtt.rto(&with_delay), rto + with_delay.max_ack_delay);
    }
}
