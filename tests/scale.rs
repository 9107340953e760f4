//! Many subscriptions on one host. 1,000 subscriptions of the seed's
//! `max_concurrency: 50` start and each delivers, with the address space
//! limited to the RAM of a 24 GiB machine, and with less committed memory
//! (what strict overcommit, `vm.overcommit_memory=2`, charges: private
//! writable mappings) than such a machine allows without swap: 12 GiB.
//! Plugin instances and their memories are reserved by use, not
//! `max_concurrency` x subscriptions up front (that was ~8 GiB of address
//! space per instance slot). Real nats-server, one real receiver, the real
//! binary.

#[path = "common.rs"]
mod common;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{stream_yaml, sub_yaml};
use support::{ConfigDir, Host, NatsServer, Receiver, publish, unique};

const SUBSCRIPTIONS: usize = 1000;
/// `ulimit -v` of the size of a 24 GiB machine's RAM.
const ADDRESS_SPACE: u64 = 24 << 30;
/// `CommitLimit` with strict overcommit (ratio 50%) on that machine, no swap.
const COMMIT_LIMIT: u64 = 12 << 30;
const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscriptions_start_within_strict_overcommit_and_each_delivers() {
    let nats = NatsServer::start();
    let receiver = Receiver::ok().await;
    let s = unique("scale");
    let wildcard = format!("{s}.>");
    let entries: String = (0..SUBSCRIPTIONS)
        .map(|i| {
            sub_yaml(
                &format!("s{i}"),
                &format!("{s}.{i}"),
                &receiver.url(&format!("/{i}")),
                "",
            )
        })
        .collect();
    let config = ConfigDir::new()
        .file("00-stream.yml", stream_yaml(&s, &[&wildcard]))
        .file("10.yml", format!("subscriptions:\n{entries}"));

    let host = Host::start_within(config.path(), &nats.url(), ADDRESS_SPACE, &[]).await;
    host.wait_healthy(WAIT).await;
    let js = nats.jetstream().await;
    for i in 0..SUBSCRIPTIONS {
        publish(&js, &format!("{s}.{i}"), format!("{{\"n\":{i}}}"), &[]).await;
    }
    let got = receiver.wait_for(SUBSCRIPTIONS, WAIT).await;
    let paths: BTreeSet<String> = got.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths.len(),
        SUBSCRIPTIONS,
        "each subscription delivered its message once"
    );
    receiver
        .assert_count_stays(SUBSCRIPTIONS, Duration::from_secs(1))
        .await;
    let pid = host.pid();
    let committed = committed_bytes(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    eprintln!(
        "{SUBSCRIPTIONS} subscriptions: VmSize {} kB, VmRSS {} kB, committed {} kB",
        field("VmSize:"),
        field("VmRSS:"),
        committed >> 10
    );
    assert!(committed < COMMIT_LIMIT, "committed {committed} bytes");
}

/// What strict overcommit charges a process: the sum of its private writable
/// mappings (`rw-p`). Reserved address space (`---p`) is not charged.
fn committed_bytes(pid: u32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (range, perms) = (parts.next()?, parts.next()?);
            if !(perms.contains('w') && perms.ends_with('p')) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            Some(u64::from_str_radix(end, 16).ok()? - start)
        })
        .sum()
}
