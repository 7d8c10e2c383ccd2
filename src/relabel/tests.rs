//! Data-driven tests of the relabel engine. Cases follow Prometheus's `relabel_test.go` (with our
//! own inputs) plus the corners of Go's regex and template reading.

use proptest::prelude::*;

use super::*;
use crate::labels::{Labels, LabelsBuilder};

/// Reads a YAML list of rules, checking each as the config loader does.
fn rules(yaml: &str) -> Vec<RelabelConfig> {
    let rules: Vec<RelabelConfig> = match serde_saphyr::from_str(yaml) {
        Ok(r) => r,
        Err(e) => panic!("rules do not parse: {e}\n{yaml}"),
    };
    for r in &rules {
        if let Err(e) = r.validate() {
            panic!("rule does not validate: {e}\n{yaml}");
        }
    }
    rules
}

/// A builder holding `pairs` in name order, as `Labels::to_builder` gives it.
fn builder(pairs: &[(&str, &str)]) -> LabelsBuilder {
    Labels::from_pairs(pairs.iter().copied()).to_builder()
}

/// Runs `yaml` rules over `input`; `expected` is the output, or None when the set is dropped.
fn check(yaml: &str, input: &[(&str, &str)], expected: Option<&[(&str, &str)]>) {
    let relabeler = Relabeler::new(&rules(yaml));
    let mut labels = builder(input);
    let kept = relabeler.process(&mut labels);
    match expected {
        None => assert!(!kept, "expected drop, kept {:?}\n{yaml}", labels.build()),
        Some(want) => {
            assert!(kept, "expected keep, dropped\n{yaml}");
            assert_eq!(
                labels.build(),
                Labels::from_pairs(want.iter().copied()),
                "\n{yaml}"
            );
        }
    }
}

#[test]
fn replace() {
    let abc = &[("a", "foo"), ("b", "bar"), ("c", "baz")];
    check(
        "- {source_labels: [a], regex: f(.*), target_label: d, replacement: 'ch${1}-ch${1}'}",
        abc,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")]),
    );
    // Two rules, the second reading what the first wrote; default separator.
    check(
        r#"
- {source_labels: [a, b], regex: 'f(.*);(.*)r', target_label: a, replacement: 'b${1}${2}m'}
- {source_labels: [c, a], regex: '(b).*b(.*)ba(.*)', target_label: d, replacement: '$1$2$2$3'}
"#,
        abc,
        Some(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")]),
    );
    // A group in the middle.
    check(
        "- {source_labels: [a], regex: '.*(b).*', target_label: d}",
        &[("a", "abc")],
        Some(&[("a", "abc"), ("d", "b")]),
    );
    // No match: no replacement.
    check(
        "- {source_labels: [a], regex: f, target_label: b, replacement: bar}",
        &[("a", "boo")],
        Some(&[("a", "boo")]),
    );
    // The regex is anchored: `o` does not match "foo".
    check(
        "- {source_labels: [a], regex: o, target_label: b, replacement: x}",
        &[("a", "foo")],
        Some(&[("a", "foo")]),
    );
    // Custom separator, and a missing source label joins as "".
    check(
        "- {source_labels: [a, missing, b], separator: '|', target_label: j}",
        &[("a", "1"), ("b", "2")],
        Some(&[("a", "1"), ("b", "2"), ("j", "1||2")]),
    );
    // Defaults: copy a label.
    check(
        "- {source_labels: [a], target_label: b}",
        &[("a", "x")],
        Some(&[("a", "x"), ("b", "x")]),
    );
    // Copying a missing label removes the target (empty result).
    check(
        "- {source_labels: [missing], target_label: b}",
        &[("a", "x"), ("b", "old")],
        Some(&[("a", "x")]),
    );
    // Fast path: nothing to read, default regex, a literal replacement sets a constant.
    check(
        "- {target_label: env, replacement: prod}",
        &[("a", "x")],
        Some(&[("a", "x"), ("env", "prod")]),
    );
    // ... and an empty literal replacement removes the target.
    check(
        "- {target_label: a, replacement: ''}",
        &[("a", "x"), ("b", "y")],
        Some(&[("b", "y")]),
    );
    // `$1x` is the group named `1x` (none): the result is empty, so the target goes.
    check(
        "- {source_labels: [a], regex: '(.+)', target_label: b, replacement: '$1x'}",
        &[("a", "v"), ("b", "old")],
        Some(&[("a", "v")]),
    );
    check(
        "- {source_labels: [a], regex: '(.+)', target_label: b, replacement: '${1}x'}",
        &[("a", "v")],
        Some(&[("a", "v"), ("b", "vx")]),
    );
    // Named groups, `$$`, and `$0`.
    check(
        "- {source_labels: [a], regex: '(?P<host>[^:]+):(?<port>\\d+)', target_label: b, replacement: '$port/${host}/$$/$0'}",
        &[("a", "web:80")],
        Some(&[("a", "web:80"), ("b", "80/web/$/web:80")]),
    );
    // Target from the match; an invalid one (here "${3}", a missing group: "") is skipped.
    check(
        "- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${1}', replacement: '${2}'}",
        &[("a", "some-name-value")],
        Some(&[("a", "some-name-value"), ("name", "value")]),
    );
    check(
        "- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${1}', replacement: '${3}'}",
        &[("a", "some-name-value")],
        Some(&[("a", "some-name-value")]),
    );
    check(
        r#"
- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${3}', replacement: '${1}'}
- {source_labels: [a], regex: 'some-([^-]+)(-[^,]+)', target_label: '${3}', replacement: '${1}'}
- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: 'x${2}', replacement: '${1}'}
- {source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${2}', replacement: '${1}'}
"#,
        &[("a", "some-name-0")],
        Some(&[("a", "some-name-0"), ("x0", "name")]),
    );
    // A real-life tag string.
    check(
        r#"
- {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)path:(/[^,]+).*', target_label: __metrics_path__, replacement: '${1}'}
- {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)job:([^,]+).*', target_label: job, replacement: '${1}'}
- {source_labels: [__meta_sd_tags], regex: '(?:.+,|^)label:([^=]+)=([^,]+).*', target_label: '${1}', replacement: '${2}'}
"#,
        &[("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar")],
        Some(&[
            ("__meta_sd_tags", "path:/secret,job:some-job,label:foo=bar"),
            ("__metrics_path__", "/secret"),
            ("job", "some-job"),
            ("foo", "bar"),
        ]),
    );
    // `.` matches a newline (Prometheus 3 anchors with (?s:)).
    check(
        "- {source_labels: [a], regex: 'foo.bar', target_label: b, replacement: yes}",
        &[("a", "foo\nbar")],
        Some(&[("a", "foo\nbar"), ("b", "yes")]),
    );
    // Go's \d is ASCII only.
    check(
        "- {source_labels: [a], regex: '\\d+', target_label: b, replacement: digits}",
        &[("a", "١٢٣")],
        Some(&[("a", "١٢٣")]),
    );
    // An explicit `(.*)` behaves as the default.
    check(
        "- {source_labels: [a], regex: '(.*)', target_label: b, replacement: 'x$1'}",
        &[("a", "v")],
        Some(&[("a", "v"), ("b", "xv")]),
    );
    // Prometheus pastes the regex between its anchors: `a)|(b` becomes `^(?s:a)|(b)$`, which
    // matches any value starting with "a". So does ours.
    check(
        "- {source_labels: [a], regex: 'a)|(b', target_label: b, replacement: '[$1]'}",
        &[("a", "axyz")],
        Some(&[("a", "axyz"), ("b", "[]")]),
    );
    // Group 0 only.
    check(
        "- {source_labels: [a], regex: 'v.', target_label: b, replacement: '<$0>'}",
        &[("a", "vw")],
        Some(&[("a", "vw"), ("b", "<vw>")]),
    );
    // Setting a label to the value it has changes nothing.
    check(
        "- {source_labels: [a], target_label: a}",
        &[("a", "v")],
        Some(&[("a", "v")]),
    );
}

#[test]
fn keep_and_drop() {
    let a = &[("a", "foo"), ("b", "bar")];
    check(
        "- {source_labels: [a], regex: '.*o.*', action: drop}",
        a,
        None,
    );
    check(
        "- {source_labels: [a], regex: no-match, action: drop}",
        a,
        Some(a),
    );
    // `f|o` is anchored as a whole: neither alternative matches "foo".
    check(
        "- {source_labels: [a], regex: 'f|o', action: drop}",
        a,
        Some(a),
    );
    check(
        "- {source_labels: [a], regex: no-match, action: keep}",
        a,
        None,
    );
    check(
        "- {source_labels: [a], regex: 'f.*', action: keep}",
        a,
        Some(a),
    );
    // A drop stops the rules after it.
    check(
        r#"
- {source_labels: [a], regex: '.*o.*', action: drop}
- {source_labels: [a], regex: 'f(.*)', target_label: d, replacement: 'ch$1'}
"#,
        a,
        None,
    );
    // Default regex matches everything, an empty value too.
    check("- {source_labels: [missing], action: keep}", a, Some(a));
    check("- {action: drop}", a, None);
    // Several sources joined.
    check(
        "- {source_labels: [a, b], regex: 'foo;bar', action: keep}",
        a,
        Some(a),
    );
    // The metric-relabel classic.
    check(
        "- {source_labels: [__name__], regex: 'go_.*|process_.*', action: drop}",
        &[("__name__", "go_goroutines"), ("job", "x")],
        None,
    );
}

#[test]
fn keepequal_and_dropequal() {
    let ports = &[
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    check(
        "- {source_labels: [__tmp_port], target_label: __port1, action: keepequal}",
        ports,
        Some(ports),
    );
    check(
        "- {source_labels: [__tmp_port], target_label: __port2, action: keepequal}",
        ports,
        None,
    );
    check(
        "- {source_labels: [__tmp_port], target_label: __port1, action: dropequal}",
        ports,
        None,
    );
    check(
        "- {source_labels: [__tmp_port], target_label: __port2, action: dropequal}",
        ports,
        Some(ports),
    );
    // Missing both sides: "" == "".
    check(
        "- {source_labels: [nope], target_label: nada, action: keepequal}",
        ports,
        Some(ports),
    );
}

#[test]
fn hashmod() {
    let abc = &[("a", "foo"), ("b", "bar"), ("c", "baz")];
    check(
        "- {source_labels: [c], target_label: d, action: hashmod, modulus: 1000}",
        abc,
        Some(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")]),
    );
    check(
        "- {source_labels: [a], target_label: b, action: hashmod, modulus: 1000}",
        &[("a", "foo\nbar")],
        Some(&[("a", "foo\nbar"), ("b", "734")]),
    );
    // The classic sharding pair.
    check(
        r#"
- {source_labels: [c], target_label: __tmp_hash, action: hashmod, modulus: 1000}
- {source_labels: [__tmp_hash], regex: '976', action: keep}
"#,
        abc,
        Some(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("__tmp_hash", "976"),
        ]),
    );
    // A rule built in code with modulus 0 (validation rejects it) does nothing.
    let rule = RelabelConfig {
        source_labels: vec!["a".into()],
        separator: ";".into(),
        regex: Regex::default_match_all(),
        modulus: 0,
        target_label: "h".into(),
        replacement: "$1".into(),
        action: Action::HashMod,
    };
    let mut labels = builder(&[("a", "x")]);
    assert!(Relabeler::new(&[rule]).process(&mut labels));
    assert_eq!(labels.build(), Labels::from_pairs([("a", "x")]));
}

#[test]
fn labelmap() {
    check(
        "- {regex: '(b.*)', replacement: 'bar_${1}', action: labelmap}",
        &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
        Some(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz"),
        ]),
    );
    check(
        "- {regex: '__meta_(my.*)', replacement: '${1}', action: labelmap}",
        &[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
        ],
        Some(&[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
            ("my_bar", "aaa"),
            ("my_baz", "bbb"),
        ]),
    );
    // The Kubernetes classic; the default replacement is `$1`.
    check(
        "- {regex: '__meta_kubernetes_pod_label_(.+)', action: labelmap}",
        &[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_kubernetes_pod_name", "web-0"),
        ],
        Some(&[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("__meta_kubernetes_pod_name", "web-0"),
            ("app", "web"),
        ]),
    );
    // Overwrites an existing label.
    check(
        "- {regex: '__meta_(.+)', action: labelmap}",
        &[("__meta_a", "new"), ("a", "old")],
        Some(&[("__meta_a", "new"), ("a", "new")]),
    );
}

#[test]
fn labelmap_collisions_follow_go_builder_order() {
    // Both names map to `y`; Go visits labels present on entry in name order: b_x wins.
    check(
        "- {regex: '(.)_x', replacement: y, action: labelmap}",
        &[("a_x", "1"), ("b_x", "2")],
        Some(&[("a_x", "1"), ("b_x", "2"), ("y", "2")]),
    );
    // After a rule sets a_x, Go's builder visits it after the untouched b_x: a_x wins.
    check(
        r#"
- {source_labels: [a_x], target_label: a_x, replacement: '3$1'}
- {regex: '(.)_x', replacement: y, action: labelmap}
"#,
        &[("a_x", "1"), ("b_x", "2")],
        Some(&[("a_x", "31"), ("b_x", "2"), ("y", "31")]),
    );
    // Labels set by rules come in the order they were first set (c_x, then a_x).
    check(
        r#"
- {target_label: c_x, replacement: c}
- {target_label: a_x, replacement: a}
- {regex: '(.)_x', replacement: y, action: labelmap}
"#,
        &[("b_x", "b")],
        Some(&[("a_x", "a"), ("b_x", "b"), ("c_x", "c"), ("y", "a")]),
    );
    // A label removed and set again moves to the end.
    check(
        r#"
- {target_label: a_x, replacement: a}
- {target_label: c_x, replacement: c}
- {regex: a_x, action: labeldrop}
- {target_label: a_x, replacement: a2}
- {regex: '(.)_x', replacement: y, action: labelmap}
"#,
        &[],
        Some(&[("a_x", "a2"), ("c_x", "c"), ("y", "a2")]),
    );
}

#[test]
fn labeldrop_and_labelkeep() {
    let ab = &[("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    check(
        "- {regex: '(b.*)', action: labelkeep}",
        ab,
        Some(&[("b1", "bar"), ("b2", "baz")]),
    );
    check(
        "- {regex: '(b.*)', action: labeldrop}",
        ab,
        Some(&[("a", "foo")]),
    );
    // Anchored: `b` alone matches no name here.
    check("- {regex: b, action: labeldrop}", ab, Some(ab));
    // From Prometheus issue 12283: drop a label, set it again, keep on it.
    check(
        r#"
- {regex: '^__meta_kubernetes_pod_container_port_name$', action: labeldrop}
- {source_labels: [__meta_kubernetes_pod_annotation_XXX_metrics_port], regex: '(.+)', target_label: __meta_kubernetes_pod_container_port_name, replacement: metrics}
- {source_labels: [__meta_kubernetes_pod_container_port_name], regex: '^metrics$', action: keep}
"#,
        &[
            ("__meta_kubernetes_pod_container_port_name", "foo"),
            ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
        ],
        Some(&[
            ("__meta_kubernetes_pod_annotation_XXX_metrics_port", "9091"),
            ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ]),
    );
}

#[test]
fn lowercase_and_uppercase() {
    check(
        r#"
- {source_labels: [foo], target_label: foo_uppercase, action: uppercase}
- {source_labels: [foo], target_label: foo_lowercase, action: lowercase}
"#,
        &[("foo", "bAr123Foo")],
        Some(&[
            ("foo", "bAr123Foo"),
            ("foo_lowercase", "bar123foo"),
            ("foo_uppercase", "BAR123FOO"),
        ]),
    );
    // Go maps one character to one: ß stays, İ lowers to i, ᾳ uppers to ᾼ; final sigma is σ.
    check(
        r#"
- {source_labels: [v], target_label: up, action: uppercase}
- {source_labels: [v], target_label: low, action: lowercase}
"#,
        &[("v", "ßİᾳÀΣΣ")],
        Some(&[("v", "ßİᾳÀΣΣ"), ("up", "ßİᾼÀΣΣ"), ("low", "ßiᾳàσσ")]),
    );
    // An empty source removes the target.
    check(
        "- {source_labels: [missing], target_label: t, action: lowercase}",
        &[("t", "x")],
        Some(&[]),
    );
}

/// (rule YAML, Prometheus's message)
const INVALID: &[(&str, &str)] = &[
    (
        "{action: replace}",
        "relabel configuration for replace action requires 'target_label' value",
    ),
    (
        "{action: lowercase}",
        "relabel configuration for lowercase action requires 'target_label' value",
    ),
    (
        "{action: hashmod, target_label: t}",
        "relabel configuration for hashmod requires non-zero modulus",
    ),
    (
        "{action: hashmod, modulus: 2}",
        "relabel configuration for hashmod action requires 'target_label' value",
    ),
    (
        "{action: hashmod, modulus: 2, target_label: '${1}'}",
        r#""${1}" is invalid 'target_label' for hashmod action"#,
    ),
    (
        "{action: keepequal}",
        "relabel configuration for keepequal action requires 'target_label' value",
    ),
    (
        "{target_label: 1abc}",
        r#""1abc" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: 'a-b'}",
        r#""a-b" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: '0${3}'}",
        r#""0${3}" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: '-${3}'}",
        r#""-${3}" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: 'a$'}",
        r#""a$" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: '$'}",
        r#""$" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: '${'}",
        r#""${" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: 'foo${'}",
        r#""foo${" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: '-foo${1}bar-'}",
        r#""-foo${1}bar-" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: 'a${}'}",
        r#""a${}" is invalid 'target_label' for replace action"#,
    ),
    (
        "{target_label: \"a\\nb\"}",
        r#""a\nb" is invalid 'target_label' for replace action"#,
    ),
    (
        "{action: lowercase, target_label: '${3}'}",
        r#""${3}" is invalid 'target_label' for lowercase action"#,
    ),
    (
        "{action: uppercase, target_label: u, replacement: x}",
        "'replacement' can not be set for uppercase action",
    ),
    (
        "{action: labelmap, replacement: 'a-$1'}",
        r#""a-$1" is invalid 'replacement' for labelmap action"#,
    ),
    (
        "{action: labelmap, replacement: ''}",
        r#""" is invalid 'replacement' for labelmap action"#,
    ),
    (
        "{action: keepequal, target_label: t, regex: '(.*)'}",
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        "{action: dropequal, target_label: t, separator: ','}",
        "dropequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        "{action: keepequal, target_label: t, modulus: 3}",
        "keepequal action requires only 'source_labels' and `target_label`, and no other fields",
    ),
    (
        "{action: labeldrop, regex: a, source_labels: [a]}",
        "labeldrop action requires only 'regex', and no other fields",
    ),
    (
        "{action: labelkeep, regex: a, target_label: a}",
        "labelkeep action requires only 'regex', and no other fields",
    ),
    (
        "{action: labelkeep, regex: a, replacement: x}",
        "labelkeep action requires only 'regex', and no other fields",
    ),
];

#[test]
fn validation_messages_are_prometheus_s() {
    for (yaml, want) in INVALID {
        let rule: RelabelConfig = match serde_saphyr::from_str(yaml) {
            Ok(r) => r,
            Err(e) => panic!("{yaml} does not parse: {e}"),
        };
        assert_eq!(rule.validate(), Err((*want).to_owned()), "{yaml}");
    }
}

#[test]
fn valid_rules_pass() {
    for yaml in [
        "{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${3}', replacement: '${1}'}",
        "{target_label: 'label${1}'}",
        "{target_label: '${1}label'}",
        "{target_label: 'asd$2asd'}",
        "{target_label: '_${1}_'}",
        "{target_label: 'foo${bar}foo'}",
        "{target_label: '$1'}",
        "{action: keep, regex: 'a.*'}",
        "{action: labelmap, regex: '__meta_(.+)'}",
        "{action: labeldrop, regex: 'tmp_.*'}",
        "{action: hashmod, source_labels: [a], target_label: h, modulus: 8}",
        "{action: keepequal, source_labels: [a], target_label: b}",
    ] {
        let rule: RelabelConfig = match serde_saphyr::from_str(yaml) {
            Ok(r) => r,
            Err(e) => panic!("{yaml} does not parse: {e}"),
        };
        assert_eq!(rule.validate(), Ok(()), "{yaml}");
    }
}

#[test]
fn yaml_defaults_are_prometheus_s() {
    let rule: RelabelConfig = serde_saphyr::from_str("target_label: x\n").unwrap();
    assert_eq!(rule.source_labels, Vec::<String>::new());
    assert_eq!(rule.separator, ";");
    assert_eq!(rule.regex.source, "(.*)");
    assert!(rule.regex.is_default);
    assert_eq!(rule.modulus, 0);
    assert_eq!(rule.replacement, "$1");
    assert_eq!(rule.action, Action::Replace);

    // An explicit `(.*)` is not the default (Prometheus compares the regex object).
    let rule: RelabelConfig = serde_saphyr::from_str("regex: (.*)\n").unwrap();
    assert!(!rule.regex.is_default);
    assert_eq!(rule, serde_saphyr::from_str("{}").unwrap());

    // Actions read case-insensitively.
    let rule: RelabelConfig = serde_saphyr::from_str("action: LabelMap\n").unwrap();
    assert_eq!(rule.action, Action::LabelMap);

    // Explicit nulls are zero values, as yaml.v2 gives them.
    let rule: RelabelConfig =
        serde_saphyr::from_str("separator:\nregex:\nreplacement: ~\nsource_labels:\nmodulus:\n")
            .unwrap();
    assert_eq!(rule.separator, "");
    assert_eq!(rule.regex.source, "");
    assert!(rule.regex.compiled().is_match(""));
    assert!(!rule.regex.compiled().is_match("a"));
    assert_eq!(rule.replacement, "");
    assert!(rule.source_labels.is_empty());

    // Scalars read as their text.
    let rule: RelabelConfig = serde_saphyr::from_str("replacement: 1.50\nregex: 10\n").unwrap();
    assert_eq!(rule.replacement, "1.50");
    assert_eq!(rule.regex.source, "10");
}

#[test]
fn yaml_errors_name_the_problem() {
    // (YAML, a fragment the error must contain)
    let cases = [
        ("target_label: x\nsource_label: [a]\n", "source_label"),
        ("regex: 'a(b'\n", "invalid regex \"a(b\": missing closing )"),
        ("regex: 'a{2}{3}'\n", "invalid nested repetition operator"),
        ("regex: '(a)\\1'\n", "invalid regex"),
        ("action: replce\n", "unknown relabel action \"replce\""),
        ("action: ''\n", "unknown relabel action \"\""),
        ("action:\n", "relabel action cannot be empty"),
        (
            "source_labels: [a, 'b-c']\n",
            "\"b-c\" is not a valid label name",
        ),
        ("modulus: -1\n", "modulus"),
    ];
    for (yaml, want) in cases {
        match serde_saphyr::from_str::<RelabelConfig>(yaml) {
            Ok(r) => panic!("{yaml:?} parsed: {r:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{yaml:?}: {msg}");
                assert!(msg.contains("line"), "{yaml:?}: no line in {msg}");
            }
        }
    }
}

#[test]
fn a_rule_list_that_changes_nothing_keeps_the_set() {
    let relabeler = Relabeler::new(&rules(
        r#"
- {source_labels: [__name__], regex: 'go_.*', action: drop}
- {regex: 'tmp_.*', action: labeldrop}
- {source_labels: [job], target_label: job}
"#,
    ));
    assert!(!relabeler.is_empty());
    assert!(Relabeler::new(&[]).is_empty());
    let input = &[("__name__", "up"), ("job", "node")];
    let mut labels = builder(input);
    for _ in 0..3 {
        assert!(relabeler.process(&mut labels));
    }
    assert_eq!(labels.build(), Labels::from_pairs(input.iter().copied()));
}

#[test]
fn many_rules_with_groups_share_the_match_record_cache() {
    // More rules with groups than the per-thread cache keeps: records are evicted and remade.
    let yaml: String = (0..40)
        .map(|i| {
            format!(
                "- {{source_labels: [a], regex: '(x)(\\d*){i}', target_label: t{i}, replacement: '$2'}}\n"
            )
        })
        .collect();
    let relabeler = Relabeler::new(&rules(&yaml));
    for round in 0..2 {
        let mut labels = builder(&[("a", "x7")]);
        assert!(relabeler.process(&mut labels));
        let built = labels.build();
        // Rule i matches "x7" only through `(x)(\d*)` followed by the digits of i: i = 7 reads
        // "x" + "" + "7", with group 2 empty, so nothing is set; no other rule matches.
        assert_eq!(built, Labels::from_pairs([("a", "x7")]), "round {round}");
        let mut labels = builder(&[("a", "x123")]);
        assert!(relabeler.process(&mut labels));
        let built = labels.build();
        assert_eq!(built.get("t3"), Some("12"), "round {round}");
        assert_eq!(built.get("t23"), Some("1"), "round {round}");
        assert_eq!(built.get("t0"), None);
    }
}

// ---- properties ----

fn arb_rule() -> impl Strategy<Value = RelabelConfig> {
    let names = prop::sample::select(vec!["a", "b", "c", "__name__", "__meta_x", "job"]);
    let regexes = prop::sample::select(vec![
        "(.*)",
        "",
        "a.*",
        "(.+)",
        "(b)(.*)",
        "x|y",
        "(?P<n>.)(.*)",
        "__meta_(.*)",
        ".*(a).*",
        "(?i)A",
        "\\d+",
        "((.)(.))?",
    ]);
    let targets = prop::sample::select(vec!["a", "b", "${1}", "$1x", "n_$2", "${n}", "t"]);
    let replacements = prop::sample::select(vec!["$1", "", "x", "${2}-$1", "$$", "$n", "$0$0"]);
    let actions = prop::sample::select(Action::ALL.to_vec());
    (
        prop::collection::vec(names, 0..3),
        prop::sample::select(vec![";", "", ","]),
        regexes,
        0u64..4,
        targets,
        replacements,
        actions,
    )
        .prop_map(
            |(sources, sep, regex, modulus, target, replacement, action)| RelabelConfig {
                source_labels: sources.into_iter().map(str::to_owned).collect(),
                separator: sep.to_owned(),
                regex: Regex::new(regex).unwrap_or_else(|_| Regex::default_match_all()),
                modulus,
                target_label: target.to_owned(),
                replacement: replacement.to_owned(),
                action,
            },
        )
}

proptest! {
    #[test]
    fn process_never_panics_and_keeps_the_invariants(
        rules in prop::collection::vec(arb_rule(), 0..6),
        pairs in prop::collection::vec(
            (prop::sample::select(vec!["a", "b", "c", "__name__", "__meta_x", "job", "n_a"]),
             "[a-c\\n;é]{0,4}"),
            0..6,
        ),
    ) {
        // Rules are taken as they come, validated or not.
        let relabeler = Relabeler::new(&rules);
        let mut labels = LabelsBuilder::new();
        for (n, v) in &pairs {
            labels.set(n, v);
        }
        if relabeler.process(&mut labels) {
            let mut seen = std::collections::BTreeSet::new();
            for l in labels.iter() {
                prop_assert!(!l.value.is_empty(), "empty value for {}", l.name);
                prop_assert!(seen.insert(l.name.to_owned()), "duplicate name {}", l.name);
            }
        }
    }
}
