//! What [`evaluate`] decides, one semantic rule at a time.

use super::*;
use crate::{ImmutabilityRule, ImmutabilityRules};

#[test]
fn each_kind_of_keep() {
    let repositories = [repository(
        "app",
        vec![
            artifact("a", 990, &["t1"]).pulled(999),
            artifact("b", 995, &["t2"]),
            artifact("c", 999, &["t3"]).pulled(996),
            artifact("d", 900, &["t4"]).pulled(998),
            artifact("e", 995, &["t5"]).pulled(990),
        ],
    )];
    let table: [(Keep, &[&str]); 10] = [
        // c is newest; b and e tie, and b is the smaller digest.
        (Keep::LatestPushed(2), &["b", "c"]),
        (Keep::LatestPushed(10), &["a", "b", "c", "d", "e"]),
        (Keep::LatestPulled(2), &["a", "d"]),
        // b was never pulled.
        (Keep::LatestPulled(10), &["a", "c", "d", "e"]),
        (Keep::PushedWithinDays(5), &["b", "c", "e"]),
        (Keep::PushedWithinDays(10), &["a", "b", "c", "e"]),
        (Keep::PulledWithinDays(2), &["a", "d"]),
        (Keep::Always, &["a", "b", "c", "d", "e"]),
        (Keep::Nothing, &[]),
        (Keep::LatestPushed(0), &[]),
    ];
    for (keep, expected) in table {
        let evaluation = run(
            &policy(vec![rule(&["**"], &["**"], false, keep)]),
            &repositories,
        );
        assert_eq!(kept_sorted(&evaluation), expected, "{keep:?}");
        for (digest, reason) in reasons(&evaluation) {
            let expected_reason = if expected.contains(&digest) {
                Reason::KeptByRule { rule: 0 }
            } else {
                Reason::NotKept { rule: 0 }
            };
            assert_eq!(reason, &expected_reason, "{keep:?} {digest}");
        }
    }
}

#[test]
fn latest_patches_per_minor() {
    let tags = [
        "1.2.0",
        "1.2.1",
        "1.2.2",
        "1.2.3",
        "1.2.4",
        "1.2.5",
        "1.3.0",
        "1.3.1",
        "2.0.0-rc.1",
        "latest",
    ];
    // Pushed in a shuffled order, so that push time cannot be what decides.
    let days = [7, 3, 9, 1, 2, 8, 6, 4, 5, 10];
    let artifacts = tags
        .iter()
        .zip(days)
        .map(|(tag, day)| artifact(&format!("sha256:{tag}"), 900 + day, &[tag]))
        .collect();
    let evaluation = run(
        &policy(vec![rule(
            &["**"],
            &["**"],
            false,
            Keep::LatestPatchesPerMinor(2),
        )]),
        &[repository("app", artifacts)],
    );
    assert_eq!(
        kept_sorted(&evaluation),
        [
            "sha256:1.2.4",
            "sha256:1.2.5",
            "sha256:1.3.0",
            "sha256:1.3.1",
            "sha256:2.0.0-rc.1"
        ]
    );
    // `latest` is selected but not a version: this rule does not keep it.
    assert_eq!(
        reasons(&evaluation)["sha256:latest"],
        &Reason::NotKept { rule: 0 }
    );

    // An artifact's highest version tag counts, and only tags the rule
    // matches: `v9.9.9` is excluded, so the second artifact is 1.0.1.
    let mut rule = rule(&["**"], &["**"], false, Keep::LatestPatchesPerMinor(1));
    rule.tags.exclude = vec![Pattern::parse("v9*").unwrap()];
    let evaluation = run(
        &policy(vec![rule]),
        &[repository(
            "app",
            vec![
                artifact("x", 990, &["1.0.0", "1.0.5", "latest"]),
                artifact("y", 999, &["1.0.1", "v9.9.9"]),
            ],
        )],
    );
    assert_eq!(kept_sorted(&evaluation), ["x", "y"]);
    assert_eq!(reasons(&evaluation)["y"], &Reason::NotSelected);
    assert_eq!(reasons(&evaluation)["x"], &Reason::KeptByRule { rule: 0 });
}

#[test]
fn keep_always_beats_delete_and_the_first_keeping_rule_is_named() {
    let repositories = [repository(
        "app",
        vec![
            artifact("old-release", 100, &["release-1"]),
            artifact("old-build", 101, &["build-1"]),
            artifact("new-release", 999, &["release-2"]),
            artifact("new-build", 998, &["build-2"]),
        ],
    )];
    let evaluation = run(
        &policy(vec![
            rule(&["**"], &["**"], false, Keep::LatestPushed(2)),
            rule(&["**"], &["release-*"], false, Keep::Always),
        ]),
        &repositories,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(reasons["old-release"], &Reason::KeptByRule { rule: 1 });
    assert_eq!(reasons["new-release"], &Reason::KeptByRule { rule: 0 });
    assert_eq!(reasons["new-build"], &Reason::KeptByRule { rule: 0 });
    assert_eq!(reasons["old-build"], &Reason::NotKept { rule: 0 });
    assert_eq!(deleted(&evaluation), ["old-build"]);
}

#[test]
fn an_immutable_tag_beats_delete() {
    let immutable = ImmutabilityRules(vec![ImmutabilityRule {
        repositories: selector(&["app"]),
        tags: selector(&["v*"]),
    }]);
    let repositories = [
        repository(
            "app",
            vec![
                artifact("app-v1", 100, &["latest-1", "v1"]),
                artifact("app-dev", 100, &["dev"]),
            ],
        ),
        repository("web", vec![artifact("web-v1", 100, &["v1"])]),
    ];
    let evaluation = evaluate(
        &policy(vec![rule(&["**"], &["**"], false, Keep::Nothing)]),
        &immutable,
        &repositories,
        NOW,
        UNPROTECTED,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(
        reasons["app-v1"],
        &Reason::ImmutableTag {
            tag: "v1".into(),
            rule: 0
        }
    );
    assert_eq!(reasons["app-dev"], &Reason::NotKept { rule: 0 });
    // The immutability rule is for `app` only.
    assert_eq!(reasons["web-v1"], &Reason::NotKept { rule: 0 });
}

/// What a tag pointed at within the tag history window stays (with its
/// children), so that the tag can be rolled back to it.
#[test]
fn what_a_tag_pointed_at_recently_is_kept() {
    let repositories = [repository(
        "app",
        vec![
            artifact("index", 900, &[])
                .children(&["child"])
                .recently_tagged(),
            artifact("child", 900, &[]),
            artifact("old", 900, &[]),
        ],
    )];
    for policy in [
        Policy::untagged_cleanup(),
        policy(vec![rule(&["**"], &["**"], true, Keep::Nothing)]),
    ] {
        let evaluation = evaluate(
            &policy,
            &ImmutabilityRules::default(),
            &repositories,
            NOW,
            UNPROTECTED,
        );
        let reasons = reasons(&evaluation);
        assert_eq!(reasons["index"], &Reason::RecentlyTagged);
        assert!(matches!(reasons["child"], Reason::ChildOfKept { .. }));
        assert_eq!(reasons["old"], &Reason::NotKept { rule: 0 });
    }
}

#[test]
fn a_recent_push_is_never_harmed() {
    let protect = NOW - DAY;
    let repositories = [repository(
        "app",
        vec![
            artifact("untagged-new", 1000, &[]),
            artifact("untagged-old", 998, &[]),
            artifact("tagged-new", 1000, &["x"]),
            // Pushed exactly at the cut-off: not after it.
            artifact("at-cutoff", 999, &["y"]),
        ],
    )];
    for policy in [
        Policy::untagged_cleanup(),
        policy(vec![rule(&["**"], &["**"], true, Keep::Nothing)]),
    ] {
        let evaluation = evaluate(
            &policy,
            &ImmutabilityRules::default(),
            &repositories,
            NOW,
            protect,
        );
        let reasons = reasons(&evaluation);
        assert_eq!(reasons["untagged-new"], &Reason::PushedRecently);
        assert_eq!(reasons["untagged-old"], &Reason::NotKept { rule: 0 });
        assert_ne!(reasons["at-cutoff"], &Reason::PushedRecently);
        assert!(matches!(
            reasons["tagged-new"],
            Reason::PushedRecently | Reason::NotSelected
        ));
        assert!(
            !evaluation
                .deletions()
                .iter()
                .any(|d| d.digest == "tagged-new")
        );
    }
}

#[test]
fn a_kept_index_keeps_its_untagged_children_even_when_untagged_is_selected() {
    // The children were pushed after the index here, so that they would be
    // the newest if they took places in the ranking; they do not.
    let repositories = [repository(
        "app",
        vec![
            artifact("index", 990, &["v1"]).children(&["amd64", "arm64", "elsewhere"]),
            artifact("amd64", 995, &[]),
            artifact("arm64", 995, &[]),
            artifact("orphan", 991, &[]),
            artifact("old", 900, &["v0"]),
        ],
    )];
    let evaluation = run(
        &policy(vec![rule(&["**"], &["**"], true, Keep::LatestPushed(2))]),
        &repositories,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(reasons["index"], &Reason::KeptByRule { rule: 0 });
    assert_eq!(reasons["orphan"], &Reason::KeptByRule { rule: 0 });
    for child in ["amd64", "arm64"] {
        assert_eq!(
            reasons[child],
            &Reason::ChildOfKept {
                index: "index".into()
            }
        );
    }
    assert_eq!(reasons["old"], &Reason::NotKept { rule: 0 });
    assert_eq!(deleted(&evaluation), ["old"]);
}

#[test]
fn a_deleted_index_takes_its_children_but_not_one_a_kept_index_shares() {
    let repositories = [repository(
        "app",
        vec![
            // Children are pushed before their index, as clients do.
            artifact("old-amd64", 100, &[]),
            artifact("shared", 100, &[]),
            artifact("old-index", 101, &["v1"]).children(&["old-amd64", "shared"]),
            artifact("new-arm64", 200, &[]),
            artifact("new-index", 201, &["v2"]).children(&["shared", "new-arm64"]),
        ],
    )];
    let evaluation = run(
        &policy(vec![rule(&["**"], &["v*"], false, Keep::LatestPushed(1))]),
        &repositories,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(reasons["old-index"], &Reason::NotKept { rule: 0 });
    assert_eq!(
        reasons["old-amd64"],
        &Reason::ChildOfDeleted {
            index: "old-index".into()
        }
    );
    assert_eq!(
        reasons["shared"],
        &Reason::ChildOfKept {
            index: "new-index".into()
        }
    );
    assert_eq!(
        reasons["new-arm64"],
        &Reason::ChildOfKept {
            index: "new-index".into()
        }
    );
    // The index first, though its child is older.
    assert_eq!(deleted(&evaluation), ["old-index", "old-amd64"]);
}

#[test]
fn referrers_follow_their_subject_and_are_deleted_after_it() {
    let repositories = [repository(
        "app",
        vec![
            artifact("old-image", 100, &["v1"]),
            // Older than its subject (clocks differ), yet deleted after it.
            artifact("old-signature", 50, &[]).subject("old-image"),
            artifact("old-signature-signature", 40, &[]).subject("old-signature"),
            artifact("new-image", 200, &["v2"]),
            artifact("new-sbom", 201, &[]).subject("new-image"),
            // A subject that is not in the repository: an ordinary untagged
            // artifact.
            artifact("dangling", 150, &[]).subject("sha256:gone"),
        ],
    )];
    let evaluation = run(
        &policy(vec![rule(&["**"], &["**"], true, Keep::LatestPushed(1))]),
        &repositories,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(
        reasons["old-signature"],
        &Reason::ReferrerOfDeleted {
            subject: "old-image".into()
        }
    );
    assert_eq!(
        reasons["old-signature-signature"],
        &Reason::ReferrerOfDeleted {
            subject: "old-signature".into()
        }
    );
    assert_eq!(
        reasons["new-sbom"],
        &Reason::ReferrerOfKept {
            subject: "new-image".into()
        }
    );
    assert_eq!(reasons["dangling"], &Reason::NotKept { rule: 0 });
    assert_eq!(
        deleted(&evaluation),
        [
            "old-image",
            "old-signature",
            "old-signature-signature",
            "dangling"
        ]
    );
}

#[test]
fn a_tag_no_rule_mentions_is_never_deleted() {
    let repositories = [
        repository(
            "app",
            vec![
                artifact("v1-and-prod", 100, &["v1", "prod"]),
                artifact("v2", 101, &["v2"]),
                artifact("v3", 999, &["v3"]),
                artifact("untagged", 100, &[]),
            ],
        ),
        repository("other", vec![artifact("other-v1", 100, &["v1"])]),
    ];
    let evaluation = run(
        &policy(vec![rule(&["app"], &["v*"], false, Keep::LatestPushed(1))]),
        &repositories,
    );
    let reasons = reasons(&evaluation);
    assert_eq!(reasons["v1-and-prod"], &Reason::NotSelected);
    assert_eq!(reasons["untagged"], &Reason::NotSelected);
    assert_eq!(reasons["other-v1"], &Reason::NotSelected);
    assert_eq!(reasons["v3"], &Reason::KeptByRule { rule: 0 });
    assert_eq!(deleted(&evaluation), ["v2"]);

    // Tags covered by two different rules make a candidate.
    let evaluation = run(
        &policy(vec![
            rule(&["app"], &["v*"], false, Keep::LatestPushed(1)),
            rule(&["app"], &["prod"], false, Keep::PushedWithinDays(1)),
        ]),
        &repositories,
    );
    assert_eq!(
        evaluation
            .decisions
            .iter()
            .find(|d| d.digest == "v1-and-prod")
            .unwrap()
            .reason,
        Reason::NotKept { rule: 0 }
    );
}

#[test]
fn ranking_is_per_repository() {
    let repositories = [
        repository(
            "b",
            vec![artifact("b1", 10, &["x"]), artifact("b2", 20, &["y"])],
        ),
        repository(
            "a",
            vec![artifact("a1", 30, &["x"]), artifact("a2", 40, &["y"])],
        ),
    ];
    let evaluation = run(
        &policy(vec![rule(&["**"], &["**"], false, Keep::LatestPushed(1))]),
        &repositories,
    );
    assert_eq!(kept_sorted(&evaluation), ["a2", "b2"]);
    // By repository name, then oldest first.
    assert_eq!(deleted(&evaluation), ["a1", "b1"]);
    let order: Vec<&str> = evaluation
        .decisions
        .iter()
        .map(|d| d.digest.as_str())
        .collect();
    assert_eq!(order, ["a1", "a2", "b1", "b2"]);
}

#[test]
fn untagged_cleanup_removes_what_nothing_kept_needs() {
    let repositories = [repository(
        "app",
        vec![
            artifact("image", 100, &["v1"]).children(&["image-amd64"]),
            artifact("image-amd64", 99, &[]),
            artifact("signature", 101, &[]).subject("image"),
            artifact("untagged-index", 50, &[]).children(&["untagged-amd64"]),
            artifact("untagged-amd64", 49, &[]),
            artifact("orphan", 10, &[]),
        ],
    )];
    let cleanup = Policy::untagged_cleanup();
    assert!(cleanup.validate().is_ok());
    let evaluation = run(&cleanup, &repositories);
    let reasons = reasons(&evaluation);
    assert_eq!(reasons["image"], &Reason::NotSelected);
    assert_eq!(
        reasons["image-amd64"],
        &Reason::ChildOfKept {
            index: "image".into()
        }
    );
    assert_eq!(
        reasons["signature"],
        &Reason::ReferrerOfKept {
            subject: "image".into()
        }
    );
    assert_eq!(reasons["untagged-index"], &Reason::NotKept { rule: 0 });
    assert_eq!(
        reasons["untagged-amd64"],
        &Reason::ChildOfDeleted {
            index: "untagged-index".into()
        }
    );
    assert_eq!(
        deleted(&evaluation),
        ["orphan", "untagged-index", "untagged-amd64"]
    );
}

#[test]
fn index_before_child_wins_over_subject_before_referrer() {
    // An index whose subject is one of its own children: the child must go
    // after the index, the index (a referrer) after its subject. The index
    // goes first.
    let repositories = [repository(
        "app",
        vec![
            artifact("child", 10, &["c"]),
            artifact("index", 20, &["i"])
                .children(&["child"])
                .subject("child"),
            artifact("unrelated", 5, &["u"]),
        ],
    )];
    let evaluation = run(
        &policy(vec![rule(&["**"], &["**"], false, Keep::Nothing)]),
        &repositories,
    );
    assert_eq!(deleted(&evaluation), ["unrelated", "index", "child"]);

    // Cycles real digests cannot make still end, with every artifact decided.
    let repositories = [repository(
        "app",
        vec![
            artifact("a", 10, &[]).children(&["b"]),
            artifact("b", 20, &[]).children(&["a"]).subject("b"),
            artifact("c", 30, &[]).subject("d"),
            artifact("d", 40, &[]).subject("c"),
        ],
    )];
    let evaluation = run(&Policy::untagged_cleanup(), &repositories);
    assert_eq!(evaluation.decisions.len(), 4);
    assert_eq!(deleted(&evaluation).len(), 4);
}

/// A project-sized input: multi-platform images with signatures, in a few
/// large repositories and in many small ones.
fn large_project(repositories: usize, images_per_repository: usize) -> Vec<Repository> {
    (0..repositories)
        .map(|r| {
            let mut artifacts = Vec::with_capacity(images_per_repository * 4);
            for i in 0..images_per_repository {
                let day = (i as i64 * 7919) % 1000;
                let digest = |kind: &str| format!("sha256:{r}-{i}-{kind}");
                artifacts.push(
                    artifact(&digest("index"), day, &[&format!("1.{}.{i}", i / 100 % 50)])
                        .children(&[&digest("amd64"), &digest("arm64")]),
                );
                artifacts.push(artifact(&digest("amd64"), day, &[]));
                artifacts.push(artifact(&digest("arm64"), day, &[]));
                artifacts
                    .push(artifact(&digest("signature"), day + 1, &[]).subject(&digest("index")));
            }
            repository(&format!("team/repo-{r}"), artifacts)
        })
        .collect()
}

#[test]
#[allow(clippy::print_stderr)]
fn scales_to_large_projects() {
    let policy: Policy = serde_json::from_str(
        r#"{"rules": [
            {"repositories": {"include": ["team/**"]}, "tags": {"include": ["1.*"], "untagged": true}, "keep": {"latest_pushed": 2}},
            {"repositories": {"include": ["**"]}, "tags": {"include": ["re:1\\.\\d+\\.\\d+"]}, "keep": {"latest_patches_per_minor": 2}},
            {"repositories": {"include": ["**"]}, "tags": {"include": ["**"]}, "keep": {"pulled_within_days": 30}}
        ]}"#,
    )
    .unwrap();
    for (repositories, images) in [(5, 5_000), (10_000, 3)] {
        let input = large_project(repositories, images);
        let started = std::time::Instant::now();
        let evaluation = evaluate(
            &policy,
            &ImmutabilityRules::default(),
            &input,
            NOW,
            UNPROTECTED,
        );
        let elapsed = started.elapsed();
        assert_eq!(evaluation.decisions.len(), repositories * images * 4);
        let deletions = evaluation.deletions();
        assert!(!deletions.is_empty());
        assert!(evaluation.kept().count() > 0);
        // Printed with `--nocapture`; the module documentation quotes it.
        eprintln!(
            "{repositories} repositories, {} artifacts: {elapsed:?}",
            repositories * images * 4
        );
    }
}
