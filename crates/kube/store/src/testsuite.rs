//! The storage trait's semantics as tests any backend must pass. A backend
//! runs them all with `store_suite!(open)`, where `open()` returns
//! `(guard, store)` for a fresh, empty store (the guard keeps its temp dir or
//! server alive).

use serde_json::{json, Value};

use crate::{EventType, FieldSelector, LabelSelector, ListOptions, Store, StoreError, WatchEvent};

fn cm(name: &str, labels: Value) -> Value {
    json!({"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns", "labels": labels}})
}

fn rv(v: &Value) -> &str {
    v["metadata"]["resourceVersion"].as_str().unwrap()
}

pub fn create_get_stamps_revision(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({}))).unwrap();
    assert_eq!(rv(&a.value), a.revision.to_string());
    let got = s.get("/cm/ns/a").unwrap();
    assert_eq!(got, a);
    assert_eq!(s.current_revision().unwrap(), a.revision);
    assert!(matches!(
        s.create("/cm/ns/a", &cm("a", json!({}))),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.get("/cm/ns/b"),
        Err(StoreError::NotFound { .. })
    ));
    // The failed create wrote nothing.
    assert_eq!(s.current_revision().unwrap(), a.revision);
}

pub fn revisions_are_global_and_increasing(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({}))).unwrap();
    let b = s
        .create("/other/b", &json!({"metadata": {"name": "b"}}))
        .unwrap();
    let a2 = s.update("/cm/ns/a", &a.value, None).unwrap();
    assert!(a.revision < b.revision && b.revision < a2.revision);
}

pub fn update_conflicts_on_stale_revision(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({"v": "1"}))).unwrap();
    let a2 = s
        .update("/cm/ns/a", &cm("a", json!({"v": "2"})), Some(a.revision))
        .unwrap();
    assert!(a2.revision > a.revision);
    let err = s
        .update("/cm/ns/a", &cm("a", json!({"v": "3"})), Some(a.revision))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected, actual, .. } if expected == a.revision && actual == a2.revision)
    );
    // Unchanged by the refused write.
    assert_eq!(s.get("/cm/ns/a").unwrap(), a2);
    assert!(matches!(
        s.update("/cm/ns/missing", &cm("m", json!({})), None),
        Err(StoreError::NotFound { .. })
    ));
}

pub fn delete_returns_last_state_and_allows_recreate(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({"v": "1"}))).unwrap();
    assert!(matches!(
        s.delete("/cm/ns/a", Some(a.revision + 100)),
        Err(StoreError::Conflict { .. })
    ));
    let gone = s.delete("/cm/ns/a", Some(a.revision)).unwrap();
    assert!(gone.revision > a.revision);
    assert_eq!(gone.value["metadata"]["labels"]["v"], "1");
    assert!(matches!(
        s.get("/cm/ns/a"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete("/cm/ns/a", None),
        Err(StoreError::NotFound { .. })
    ));
    let again = s.create("/cm/ns/a", &cm("a", json!({}))).unwrap();
    assert!(again.revision > gone.revision);
}

pub fn list_prefix_selectors_and_order(s: &dyn Store) {
    s.create("/cm/ns/b", &cm("b", json!({"app": "web"})))
        .unwrap();
    s.create("/cm/ns/a", &cm("a", json!({"app": "db"})))
        .unwrap();
    s.create("/cm/ns2/c", &cm("c", json!({"app": "web"})))
        .unwrap();
    s.create("/cm/nsx", &cm("x", json!({}))).unwrap();
    let all = s.list("/cm/ns/", &ListOptions::default()).unwrap();
    let keys: Vec<_> = all.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["/cm/ns/a", "/cm/ns/b"]);
    assert_eq!(all.revision, s.current_revision().unwrap());
    let opts = ListOptions {
        labels: LabelSelector::parse("app=web").unwrap(),
        ..Default::default()
    };
    let web = s.list("/cm/", &opts).unwrap();
    let keys: Vec<_> = web.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["/cm/ns/b", "/cm/ns2/c"]);
    let opts = ListOptions {
        fields: FieldSelector::parse("metadata.name=a").unwrap(),
        ..Default::default()
    };
    assert_eq!(s.list("/cm/", &opts).unwrap().items.len(), 1);
}

pub fn list_pages_at_one_revision(s: &dyn Store) {
    for n in ["a", "b", "c", "d", "e"] {
        s.create(&format!("/cm/ns/{n}"), &cm(n, json!({}))).unwrap();
    }
    let mut opts = ListOptions {
        limit: 2,
        ..Default::default()
    };
    let p1 = s.list("/cm/ns/", &opts).unwrap();
    assert_eq!(p1.items.len(), 2);
    // Writes between pages do not show up in later pages.
    s.delete("/cm/ns/d", None).unwrap();
    s.create("/cm/ns/f", &cm("f", json!({}))).unwrap();
    let mut names: Vec<String> = p1.items.iter().map(|i| i.key.clone()).collect();
    opts.continue_token = p1.continue_token.clone();
    loop {
        let p = s.list("/cm/ns/", &opts).unwrap();
        assert_eq!(p.revision, p1.revision);
        names.extend(p.items.iter().map(|i| i.key.clone()));
        match p.continue_token {
            Some(t) => opts.continue_token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        names,
        ["/cm/ns/a", "/cm/ns/b", "/cm/ns/c", "/cm/ns/d", "/cm/ns/e"]
    );
    opts.continue_token = Some("garbage".into());
    assert!(matches!(
        s.list("/cm/ns/", &opts),
        Err(StoreError::InvalidContinue)
    ));
}

fn next(w: &mut crate::Watcher) -> WatchEvent {
    w.next_blocking().expect("watch ended")
}

pub fn watch_from_revision_sees_changes_in_order(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({}))).unwrap();
    let start = a.revision;
    s.update("/cm/ns/a", &cm("a", json!({"v": "2"})), None)
        .unwrap();
    s.create("/other/z", &json!({})).unwrap();
    let mut w = s
        .watch(
            "/cm/",
            start,
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .unwrap();
    // Backlog first (after `start`), then live writes.
    let e = next(&mut w);
    assert_eq!(
        (e.kind, e.object.value["metadata"]["labels"]["v"].as_str()),
        (EventType::Modified, Some("2"))
    );
    s.create("/cm/ns/b", &cm("b", json!({}))).unwrap();
    let d = s.delete("/cm/ns/a", None).unwrap();
    let e = next(&mut w);
    assert_eq!(
        (e.kind, e.object.key.as_str()),
        (EventType::Added, "/cm/ns/b")
    );
    let e = next(&mut w);
    assert_eq!(
        (e.kind, e.object.revision),
        (EventType::Deleted, d.revision)
    );
    assert!(w.try_next().is_none());
}

pub fn watch_with_selector_translates_transitions(s: &dyn Store) {
    let from = s.current_revision().unwrap();
    let mut w = s
        .watch(
            "/cm/",
            from,
            LabelSelector::parse("app=web").unwrap(),
            FieldSelector::default(),
        )
        .unwrap();
    s.create("/cm/ns/a", &cm("a", json!({"app": "db"})))
        .unwrap();
    s.update("/cm/ns/a", &cm("a", json!({"app": "web"})), None)
        .unwrap();
    s.update("/cm/ns/a", &cm("a", json!({"app": "web", "x": "y"})), None)
        .unwrap();
    s.update("/cm/ns/a", &cm("a", json!({"app": "db"})), None)
        .unwrap();
    s.delete("/cm/ns/a", None).unwrap();
    s.create("/cm/ns/z", &cm("z", json!({"app": "web"})))
        .unwrap();
    let kinds: Vec<_> = (0..4).map(|_| next(&mut w).kind).collect();
    assert_eq!(
        kinds,
        [
            EventType::Added,
            EventType::Modified,
            EventType::Deleted,
            EventType::Added
        ]
    );
}

pub fn compaction_makes_old_revisions_gone(s: &dyn Store) {
    let a = s.create("/cm/ns/a", &cm("a", json!({"v": "1"}))).unwrap();
    let b = s.create("/cm/ns/b", &cm("b", json!({}))).unwrap();
    s.delete("/cm/ns/b", None).unwrap();
    let a2 = s
        .update("/cm/ns/a", &cm("a", json!({"v": "2"})), None)
        .unwrap();
    s.compact(a2.revision).unwrap();
    assert!(matches!(
        s.watch(
            "/cm/",
            a.revision,
            LabelSelector::default(),
            FieldSelector::default()
        ),
        Err(StoreError::Gone { .. })
    ));
    // Current state is intact; watching from the horizon still works.
    assert_eq!(s.get("/cm/ns/a").unwrap(), a2);
    assert!(matches!(
        s.get("/cm/ns/b"),
        Err(StoreError::NotFound { .. })
    ));
    let list = s.list("/cm/", &ListOptions::default()).unwrap();
    assert_eq!(list.items, vec![a2.clone()]);
    let mut w = s
        .watch(
            "/cm/",
            a2.revision,
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .unwrap();
    let a3 = s
        .update("/cm/ns/a", &cm("a", json!({"v": "3"})), None)
        .unwrap();
    let e = next(&mut w);
    assert_eq!(
        (e.kind, e.object.revision),
        (EventType::Modified, a3.revision)
    );
    let _ = b;
}

/// A watcher that stops reading is dropped once a whole queue of events waits
/// for it (and says it expired); another watcher of the same writes, reading
/// along, sees every one of them and keeps being served.
pub fn slow_watcher_expires_and_others_keep_up(s: &dyn Store) {
    let from = s.current_revision().unwrap();
    let watch = || {
        s.watch(
            "/cm/",
            from,
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .unwrap()
    };
    let mut slow = watch();
    let mut fast = watch();
    let queue = crate::watch_queue_len();
    let mut last = 0;
    for i in 0..=queue {
        last = s
            .create(&format!("/cm/ns/o{i}"), &cm(&format!("o{i}"), json!({})))
            .unwrap()
            .revision;
        assert_eq!(next(&mut fast).object.revision, last);
    }
    // The slow one gets what fitted in its queue, in order, then the end.
    let mut got = Vec::new();
    while let Some(ev) = slow.next_blocking() {
        got.push(ev.object.revision);
    }
    assert_eq!(got.len(), queue);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert!(got.last() < Some(&last));
    assert!(slow.expired());
    assert!(!fast.expired());
    let more = s.create("/cm/ns/more", &cm("more", json!({}))).unwrap();
    let e = next(&mut fast);
    assert_eq!(
        (e.kind, e.object.revision),
        (EventType::Added, more.revision)
    );
    // A new watch from the slow one's last event sees the rest.
    let mut again = s
        .watch(
            "/cm/",
            *got.last().unwrap(),
            LabelSelector::default(),
            FieldSelector::default(),
        )
        .unwrap();
    assert_eq!(next(&mut again).object.revision, last);
    assert_eq!(next(&mut again).object.revision, more.revision);
}

/// Generate one `#[test]` per semantic test, against stores from `$open()`.
#[macro_export]
macro_rules! store_suite {
    ($open:path) => {
        $crate::store_suite!(@tests $open;
            create_get_stamps_revision,
            revisions_are_global_and_increasing,
            update_conflicts_on_stale_revision,
            delete_returns_last_state_and_allows_recreate,
            list_prefix_selectors_and_order,
            list_pages_at_one_revision,
            watch_from_revision_sees_changes_in_order,
            watch_with_selector_translates_transitions,
            compaction_makes_old_revisions_gone,
            slow_watcher_expires_and_others_keep_up);
    };
    (@tests $open:path; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $open();
                $crate::testsuite::$name(&store);
            }
        )*
    };
}
