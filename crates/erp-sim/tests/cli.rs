//! The `erp-sim` binary as the load suite and operators meet it.

use std::process::Command;

/// The load suite and operators stop the simulator with SIGINT (also its parent-death signal):
/// it must exit even with a request hanging in it, not linger holding its port.
#[test]
fn erp_sim_exits_on_interrupt_with_a_request_hanging() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::time::{Duration, Instant};

    let mut sim = Command::new(env!("CARGO_BIN_EXE_erp-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start erp-sim");
    // Kept open to the end: a closed pipe would make the simulator's next line of output fail,
    // and it would exit for that rather than for the interrupt.
    let mut out = BufReader::new(sim.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).expect("read the listening line");
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    let request = |text: &str| {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.write_all(text.as_bytes()).expect("write");
        s
    };
    let mut hang = request(
        "POST /__sim/hang HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    let mut answer = String::new();
    hang.read_to_string(&mut answer)
        .expect("hang switch answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _hanging = request("GET /api/comprehensive-kpis HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(200));

    let pid = i32::try_from(sim.id()).expect("pid");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = sim.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        let _ = sim.kill();
        let _ = sim.wait();
    }
    drop(out);
    let status = status.unwrap_or_else(|| panic!("erp-sim still running 15 s after SIGINT"));
    assert!(status.success(), "erp-sim did not stop cleanly: {status}");
}
