//! The policy types as users see them: sentences, JSON, validation and the
//! OpenAPI schemas.

use super::*;

#[test]
fn reasons_read_as_sentences() {
    let table = [
        (Reason::KeptByRule { rule: 0 }, "kept by rule 1"),
        (
            Reason::NotKept { rule: 2 },
            "deleted: selected by rule 3 and kept by no rule",
        ),
        (
            Reason::ImmutableTag {
                tag: "v1".into(),
                rule: 0,
            },
            "kept: tag v1 is immutable (immutability rule 1)",
        ),
        (
            Reason::NotSelected,
            "kept: outside the policy (a tag no rule mentions, or untagged with no rule for untagged artifacts)",
        ),
        (
            Reason::PushedRecently,
            "kept: pushed too recently to be touched (a push may be in progress)",
        ),
        (
            Reason::ChildOfKept {
                index: "sha256:aa".into(),
            },
            "kept: part of the kept index sha256:aa",
        ),
        (
            Reason::ReferrerOfKept {
                subject: "sha256:bb".into(),
            },
            "kept: refers to the kept artifact sha256:bb",
        ),
        (
            Reason::ChildOfDeleted {
                index: "sha256:cc".into(),
            },
            "deleted: part of the deleted index sha256:cc",
        ),
        (
            Reason::ReferrerOfDeleted {
                subject: "sha256:dd".into(),
            },
            "deleted: refers to the deleted artifact sha256:dd",
        ),
    ];
    for (reason, sentence) in table {
        assert_eq!(reason.to_string(), sentence);
        assert_eq!(reason.deletes(), sentence.starts_with("deleted"));
    }
    let decision = Decision {
        repository: "team/app".into(),
        digest: "sha256:aa".into(),
        tags: vec!["v1".into(), "latest".into()],
        delete: false,
        reason: Reason::KeptByRule { rule: 0 },
    };
    assert_eq!(
        decision.to_string(),
        "team/app@sha256:aa (v1, latest): kept by rule 1"
    );
    let untagged = Decision {
        tags: Vec::new(),
        delete: true,
        reason: Reason::NotKept { rule: 0 },
        ..decision
    };
    assert_eq!(
        untagged.to_string(),
        "team/app@sha256:aa (untagged): deleted: selected by rule 1 and kept by no rule"
    );
}

#[test]
fn policies_in_json() {
    let policy: Policy = serde_json::from_str(
        r#"{"rules": [
            {"repositories": {"include": ["**"], "exclude": ["scratch/**"]},
             "tags": {"include": ["v*"], "exclude": ["*-rc*"]},
             "keep": {"latest_pushed": 10}},
            {"repositories": {"include": ["team/*"]},
             "tags": {"include": [], "untagged": true},
             "keep": {"pushed_within_days": 7}},
            {"repositories": {"include": ["**"]},
             "tags": {"include": ["re:\\d+\\.\\d+\\.\\d+"]},
             "keep": "always"}
        ]}"#,
    )
    .unwrap();
    assert!(policy.validate().is_ok());
    assert_eq!(policy.rules[0].keep, Keep::LatestPushed(10));
    assert_eq!(policy.rules[2].keep, Keep::Always);
    assert!(policy.rules[1].tags.untagged);
    let back: Policy = serde_json::from_str(&serde_json::to_string(&policy).unwrap()).unwrap();
    assert_eq!(back, policy);
    assert_eq!(
        serde_json::to_string(&policy.rules[2]).unwrap(),
        r#"{"repositories":{"include":["**"]},"tags":{"include":["re:\\d+\\.\\d+\\.\\d+"],"untagged":false},"keep":"always"}"#
    );

    let rejected = [
        (
            r#"{"rules": [{"repositories": {"include": ["**"]}, "tags": {"include": ["re:("]}, "keep": "always"}]}"#,
            r#"invalid tag pattern "re:(": regex parse error: unclosed group"#,
        ),
        (
            r#"{"rules": [{"repositories": {"include": ["{a"]}, "tags": {"include": ["**"]}, "keep": "always"}]}"#,
            r#"invalid repository pattern "{a": a { is never closed by }"#,
        ),
        (
            r#"{"rules": [{"repositories": {"include": ["**"]}, "tags": {"include": ["**"]}, "keep": "nothing"}]}"#,
            "unknown variant `nothing`",
        ),
        (
            r#"{"rules": [{"repositories": {"include": ["**"]}, "tags": {"include": ["**"], "untaged": true}, "keep": "always"}]}"#,
            "unknown field `untaged`",
        ),
        (r#"{"rules": [], "name": "x"}"#, "unknown field `name`"),
    ];
    for (json, expected) in rejected {
        let e = serde_json::from_str::<Policy>(json)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(expected), "{json}: {e}");
    }
}

#[test]
fn reasons_and_evaluations_in_json() {
    assert_eq!(
        serde_json::to_string(&Reason::KeptByRule { rule: 0 }).unwrap(),
        r#"{"kind":"kept_by_rule","rule":0}"#
    );
    assert_eq!(
        serde_json::to_string(&Reason::NotSelected).unwrap(),
        r#"{"kind":"not_selected"}"#
    );
    assert_eq!(
        serde_json::to_string(&Reason::ChildOfDeleted {
            index: "sha256:aa".into()
        })
        .unwrap(),
        r#"{"kind":"child_of_deleted","index":"sha256:aa"}"#
    );
    let evaluation = run(
        &Policy::untagged_cleanup(),
        &[repository("app", vec![artifact("a", 1, &[])])],
    );
    let json = serde_json::to_string(&evaluation).unwrap();
    assert_eq!(
        json,
        r#"{"decisions":[{"repository":"app","digest":"a","tags":[],"delete":true,"reason":{"kind":"not_kept","rule":0}}]}"#
    );
    assert_eq!(
        serde_json::from_str::<Evaluation>(&json).unwrap(),
        evaluation
    );
}

#[test]
fn validation_names_the_rule() {
    let good = || rule(&["**"], &["**"], false, Keep::LatestPushed(5));
    let with = |change: &dyn Fn(&mut Rule)| {
        let mut second = good();
        change(&mut second);
        policy(vec![good(), second])
    };
    let table: Vec<(Policy, &str)> = vec![
        (policy(vec![]), "a retention policy needs at least one rule"),
        (
            policy((0..101).map(|_| good()).collect()),
            "a retention policy may have at most 100 rules, not 101",
        ),
        (
            with(&|r| r.keep = Keep::LatestPushed(0)),
            "rule 2: keep latest_pushed must be between 1 and 1000000, not 0",
        ),
        (
            with(&|r| r.keep = Keep::LatestPulled(1_000_001)),
            "rule 2: keep latest_pulled must be between 1 and 1000000, not 1000001",
        ),
        (
            with(&|r| r.keep = Keep::PushedWithinDays(100_001)),
            "rule 2: keep pushed_within_days must be between 1 and 100000, not 100001",
        ),
        (
            with(&|r| r.keep = Keep::PulledWithinDays(0)),
            "rule 2: keep pulled_within_days must be between 1 and 100000, not 0",
        ),
        (
            with(&|r| r.keep = Keep::LatestPatchesPerMinor(0)),
            "rule 2: keep latest_patches_per_minor must be between 1 and 1000000, not 0",
        ),
        (
            with(&|r| r.tags.include.clear()),
            "rule 2: tags.include is empty and untagged is false, so the rule selects nothing; use [\"**\"] for every tag or set untagged",
        ),
        (
            with(&|r| r.repositories.include.clear()),
            "rule 2: repositories.include is empty, so the rule selects nothing; use [\"**\"] for every repository",
        ),
    ];
    for (policy, expected) in table {
        assert_eq!(policy.validate().unwrap_err().to_string(), expected);
    }
    assert!(
        with(&|r| {
            r.tags.include.clear();
            r.tags.untagged = true;
        })
        .validate()
        .is_ok()
    );
    assert!(
        policy((0..100).map(|_| good()).collect())
            .validate()
            .is_ok()
    );
}

#[test]
fn openapi_schemas() {
    use utoipa::{PartialSchema, ToSchema};
    let json = |schema| serde_json::to_string(&schema).unwrap();
    assert_eq!(Policy::name(), "RetentionPolicy");
    assert_eq!(Reason::name(), "RetentionReason");
    let keep = json(Keep::schema());
    assert!(keep.contains("latest_patches_per_minor"), "{keep}");
    assert!(!keep.contains("nothing"), "internal only: {keep}");
    for (name, schema) in [
        ("policy", json(Policy::schema())),
        ("rule", json(Rule::schema())),
        ("keep", keep.clone()),
        ("selector", json(Selector::schema())),
        ("decision", json(Decision::schema())),
        ("tags", json(TagSelector::schema())),
        ("reason", json(Reason::schema())),
        ("evaluation", json(Evaluation::schema())),
        ("pattern", json(Pattern::schema())),
        ("immutability", json(crate::ImmutabilityRules::schema())),
        ("schedule", json(crate::Schedule::schema())),
    ] {
        // Descriptions come from doc comments; no rustdoc links in them.
        assert!(!schema.contains("[`"), "{name}: {schema}");
    }
}
