//! Clear errors from `run`: interface missing, no permission, XDP unsupported, queue out
//! of range, core out of range; and `check-config`.

use crate::live_common;

use live_common::*;
use std::process::Command;

fn fails_with(o: &SensorOutput, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success:\n{}",
        o.stderr
    );
    assert!(
        o.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        o.stderr
    );
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
}

#[test]
fn live_error_missing_interface() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    let o = sensor_cmd(&["run", "--iface", "rstw-nope0"]);
    fails_with(&o, "no network interface named \"rstw-nope0\"");
}

#[test]
fn live_error_no_interface_given() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    let o = sensor_cmd(&["run"]);
    fails_with(&o, "no capture interface: give --iface");
}

#[test]
fn live_error_queue_out_of_range() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_error_queue_out_of_range") {
        return;
    }
    let veth = Veth::new();
    let o = sensor_cmd(&["run", "--iface", &veth.host, "--queues", "0,5"]);
    fails_with(
        &o,
        &format!(
            "queue 5 is out of range on {}: it has 1 receive queue(s)",
            veth.host
        ),
    );
}

#[test]
fn live_error_core_out_of_range() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_error_core_out_of_range") {
        return;
    }
    let veth = Veth::new();
    let o = sensor_cmd(&["run", "--iface", &veth.host, "--cores", "4096"]);
    fails_with(
        &o,
        "core 4096 is out of range: this process may run on cores",
    );
    let o = sensor_cmd(&["run", "--iface", &veth.host, "--cores", "0,1"]);
    fails_with(&o, "cores: 2 core(s) for 1 queue(s)");
    let o = sensor_cmd(&[
        "run", "--iface", &veth.host, "--fanout", "2", "--cores", "0,1",
    ]);
    fails_with(&o, "fan-out needs 3");
}

#[test]
fn live_error_no_permission() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_error_no_permission") {
        return;
    }
    let Some(setpriv) = which("setpriv") else {
        panic!("setpriv (util-linux) is needed to drop capabilities");
    };
    let veth = Veth::new();
    // Root without capabilities: an empty bounding set leaves nothing after exec.
    let o = Command::new(setpriv)
        .args(["--bounding-set=-all", "--inh-caps=-all"])
        .arg(sensor_bin())
        .args(["run", "--iface", &veth.host])
        .output()
        .unwrap();
    let o = SensorOutput {
        status: o.status,
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    };
    fails_with(&o, "permission denied");
    fails_with(
        &o,
        "CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_RAW and CAP_IPC_LOCK",
    );
    let idx = rstwatch_xdp::ifindex(&veth.host).unwrap();
    assert!(!rstwatch_xdp::query_xdp(idx).unwrap().any());
}

/// Loopback has no native XDP: `--mode native` fails clearly, `auto` falls back to
/// generic mode and says so. (In the test's own namespace.)
#[test]
fn live_error_xdp_unsupported_and_fallback() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_error_xdp_unsupported_and_fallback") {
        return;
    }
    let veth = Veth::new();
    let run = |args: &[&str]| {
        let o = Command::new("ip")
            .args(["netns", "exec", &veth.ns])
            .arg(sensor_bin())
            .arg("run")
            .args(args)
            .output()
            .unwrap();
        SensorOutput {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into(),
            stderr: String::from_utf8_lossy(&o.stderr).into(),
        }
    };
    let o = run(&["--iface", "lo", "--mode", "native"]);
    fails_with(&o, "XDP is not supported on lo in native mode");
    let o = run(&["--iface", "lo", "--mode", "auto", "--duration", "0.3"]);
    o.assert_success();
    assert!(
        o.stderr.contains("falling back to generic (SKB) mode"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("attached in generic mode"),
        "{}",
        o.stderr
    );
}

#[test]
fn check_config_prints_effective_configuration() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    let dir = std::env::temp_dir().join(format!("rstwatch-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "iface = \"eth1\"\nqueues = [0]\ncores = [1, 0, 1]\nfanout = 2\nmode = \"generic\"\n\
         metrics_listen = \"127.0.0.1:9108\"\n[busy_poll]\nusecs = 50\n[engine]\nverdict_delay_ms = 200\n",
    )
    .unwrap();
    let o = sensor_cmd(&["check-config", good.to_str().unwrap()]);
    o.assert_success();
    for want in [
        "iface = \"eth1\"",
        "fanout = 2",
        "mode = \"generic\"",
        "verdict_delay_ms = 200",
        "flow_capacity = 1000000",
        "[busy_poll]",
        "budget = 64",
    ] {
        assert!(
            o.stdout.contains(want),
            "missing {want:?} in:\n{}",
            o.stdout
        );
    }
    // The printed configuration is itself a valid configuration.
    let round = dir.join("round.toml");
    std::fs::write(&round, &o.stdout).unwrap();
    let o2 = sensor_cmd(&["check-config", round.to_str().unwrap()]);
    o2.assert_success();

    for (text, needle) in [
        ("iface = \"eth1\"\nqueus = [0]\n", "unknown field `queus`"),
        (
            "[engine]\nverdict_delay = 5\n",
            "unknown field `verdict_delay`",
        ),
        ("mode = \"turbo\"\n", "unknown XDP mode \"turbo\""),
        ("cores = [0, 1]\n", "cores: 2 core(s) for 1 queue(s)"),
        ("ring_size = 1000\n", "ring_size: a power of two"),
        ("metrics_listen = \"nowhere\"\n", "metrics_listen"),
        ("queues = [0, 0]\n", "lists a queue twice"),
    ] {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let o = sensor_cmd(&["check-config", bad.to_str().unwrap()]);
        assert!(!o.status.success(), "accepted {text:?}");
        assert!(
            o.stderr.contains(needle),
            "{text:?}: expected {needle:?} in {}",
            o.stderr
        );
        assert!(
            o.stderr.contains("bad.toml"),
            "names the file: {}",
            o.stderr
        );
    }
    let o = sensor_cmd(&["check-config", dir.join("missing.toml").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(o.stderr.contains("missing.toml"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `run --config` takes the file's settings, flags override them.
#[test]
fn live_run_uses_config_file() {
    let _gate = live_common::one_file_at_a_time(module_path!());
    if should_skip("live_run_uses_config_file") {
        return;
    }
    let veth = Veth::new();
    let dir = std::env::temp_dir().join(format!("rstwatch-cfg2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!("iface = \"{}\"\nmode = \"generic\"\n", veth.host),
    )
    .unwrap();
    let o = sensor_cmd(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--duration",
        "0.3",
    ]);
    o.assert_success();
    assert!(
        o.stderr.contains("attached in generic mode"),
        "{}",
        o.stderr
    );
    let o = sensor_cmd(&[
        "run",
        "--config",
        cfg.to_str().unwrap(),
        "--mode",
        "native",
        "--duration",
        "0.3",
    ]);
    o.assert_success();
    assert!(o.stderr.contains("attached in native mode"), "{}", o.stderr);
    let _ = std::fs::remove_dir_all(dir);
}
