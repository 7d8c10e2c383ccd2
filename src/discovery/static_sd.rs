//! `static_configs`: fixed target groups straight from the config.

use super::TargetGroup;
use crate::config::StaticConfig;
use crate::labels::{ADDRESS, Labels};

/// The groups of a job's `static_configs`, sources `static/<index>` as Prometheus names them.
pub(super) fn groups(configs: &[StaticConfig]) -> Vec<TargetGroup> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| TargetGroup {
            source: format!("static/{i}"),
            targets: c
                .targets
                .iter()
                .map(|t| Labels::from_pairs([(ADDRESS, t.as_str())]))
                .collect(),
            labels: c.labels.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_per_static_config() {
        let configs = vec![
            StaticConfig {
                targets: vec!["a:1".into(), "b:2".into()],
                labels: Labels::from_pairs([("env", "prod")]),
            },
            StaticConfig {
                targets: vec!["c:3".into()],
                labels: Labels::empty(),
            },
        ];
        let groups = groups(&configs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].source, "static/0");
        assert_eq!(groups[0].targets[1].get(ADDRESS), Some("b:2"));
        assert_eq!(groups[0].labels.get("env"), Some("prod"));
        assert_eq!(groups[1].targets.len(), 1);
    }
}
