//! Writes the synthetic capture of the replay comparison (`benches/replay_vs_suricata.sh`):
//! `--packets` frames of `--flows` concurrent TCP flows (IPv4, Ethernet, valid
//! checksums), every flow a handshake, data both ways in mixed sizes (pure ACKs,
//! requests of 40–400 bytes, responses of 1–1448 bytes, half of them full-size), then a
//! FIN exchange or, for `--reset-share` of the flows, an RST from the server. A flow
//! that ends is replaced by a new one, so the number of concurrent flows stays at
//! `--flows`. The same options always give the same file.

use anyhow::Context;
use clap::Parser;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use rstwatch_sensor::gen::packet::{build, Wire, ACK, FIN, PSH, RST, SYN};
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// Writes the synthetic capture of the replay comparison (`benches/replay_vs_suricata.sh`).
#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 2_000_000)]
    packets: u64,
    #[arg(long, default_value_t = 50_000)]
    flows: usize,
    /// Share of the flows the server ends with an RST.
    #[arg(long, default_value_t = 0.1)]
    reset_share: f64,
    /// Microseconds of capture time between frames.
    #[arg(long, default_value_t = 10)]
    gap_us: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

/// splitmix64: small, deterministic, good enough to pick sizes and slots.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where a flow is: the next packet it sends.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    Syn,
    SynAck,
    Ack,
    /// Data segments left to send.
    Data(u32),
    Reset,
    Fin,
    FinAck,
    LastAck,
    /// Ended: the caller replaces it.
    Done,
}

#[derive(Clone, Copy)]
struct Flow {
    client: (Ipv4Addr, u16),
    server: (Ipv4Addr, u16),
    /// Next sequence number of each side.
    cseq: u32,
    sseq: u32,
    step: Step,
    reset: bool,
}

impl Flow {
    fn new(n: u64, rng: &mut Rng, reset_share: f64) -> Flow {
        let host = (n % 250) as u8 + 1;
        let client = if (n / 250).is_multiple_of(2) {
            Ipv4Addr::new(192, 0, 2, host)
        } else {
            Ipv4Addr::new(198, 51, 100, host)
        };
        let port = 1024 + ((n / 500) % 64_000) as u16;
        let server = Ipv4Addr::new(203, 0, 113, (n % 50) as u8 + 1);
        Flow {
            client: (client, port),
            server: (server, if n.is_multiple_of(3) { 80 } else { 443 }),
            cseq: rng.next() as u32,
            sseq: rng.next() as u32,
            step: Step::Syn,
            reset: (rng.below(1_000_000) as f64) < reset_share * 1e6,
        }
    }

    /// The next frame of this flow; `None` once it has ended.
    fn next_frame(&mut self, rng: &mut Rng, payload: &[u8]) -> Option<Vec<u8>> {
        let (c, s) = (self.client, self.server);
        let from_client = |flags, seq, ack, len: usize| {
            let w = Wire::tcp(IpAddr::V4(c.0), c.1, IpAddr::V4(s.0), s.1, flags, seq, ack);
            build(&Wire {
                payload: &payload[..len],
                ..w
            })
        };
        let from_server = |flags, seq, ack, len: usize| {
            let w = Wire::tcp(IpAddr::V4(s.0), s.1, IpAddr::V4(c.0), c.1, flags, seq, ack);
            build(&Wire {
                payload: &payload[..len],
                ttl: 57,
                ..w
            })
        };
        let f = match self.step {
            Step::Syn => {
                self.step = Step::SynAck;
                self.cseq = self.cseq.wrapping_add(1);
                from_client(SYN, self.cseq.wrapping_sub(1), 0, 0)
            }
            Step::SynAck => {
                self.step = Step::Ack;
                self.sseq = self.sseq.wrapping_add(1);
                from_server(SYN | ACK, self.sseq.wrapping_sub(1), self.cseq, 0)
            }
            Step::Ack => {
                self.step = Step::Data(4 + rng.below(37) as u32);
                from_client(ACK, self.cseq, self.sseq, 0)
            }
            Step::Data(left) => {
                self.step = match left {
                    1 if self.reset => Step::Reset,
                    1 => Step::Fin,
                    n => Step::Data(n - 1),
                };
                match rng.below(8) {
                    // A request.
                    0 | 1 => {
                        let len = 40 + rng.below(361) as usize;
                        let seq = self.cseq;
                        self.cseq = self.cseq.wrapping_add(len as u32);
                        from_client(PSH | ACK, seq, self.sseq, len)
                    }
                    // A pure ACK from the client.
                    2 => from_client(ACK, self.cseq, self.sseq, 0),
                    // A response segment: full-size or the last, shorter one.
                    n => {
                        let len = if n < 6 {
                            1448
                        } else {
                            1 + rng.below(1448) as usize
                        };
                        let seq = self.sseq;
                        self.sseq = self.sseq.wrapping_add(len as u32);
                        from_server(ACK, seq, self.cseq, len)
                    }
                }
            }
            Step::Reset => {
                self.step = Step::Done;
                from_server(RST | ACK, self.sseq, self.cseq, 0)
            }
            Step::Fin => {
                self.step = Step::FinAck;
                self.cseq = self.cseq.wrapping_add(1);
                from_client(FIN | ACK, self.cseq.wrapping_sub(1), self.sseq, 0)
            }
            Step::FinAck => {
                self.step = Step::LastAck;
                self.sseq = self.sseq.wrapping_add(1);
                from_server(FIN | ACK, self.sseq.wrapping_sub(1), self.cseq, 0)
            }
            Step::LastAck => {
                self.step = Step::Done;
                from_client(ACK, self.cseq, self.sseq, 0)
            }
            Step::Done => return None,
        };
        Some(f)
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(a.flows > 0, "--flows must be at least 1");
    let file = std::fs::File::create(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(BufWriter::with_capacity(1 << 20, file), header)?;
    let mut rng = Rng(a.seed);
    let payload: Vec<u8> = (0..1448u32).map(|i| (i * 7 + 13) as u8).collect();
    let mut next_id = 0u64;
    let mut flows: Vec<Flow> = (0..a.flows)
        .map(|_| {
            next_id += 1;
            Flow::new(next_id, &mut rng, a.reset_share)
        })
        .collect();
    let start_us = 1_767_225_600_000_000u64;
    let (mut written, mut bytes, mut resets, mut ended) = (0u64, 0u64, 0u64, 0u64);
    while written < a.packets {
        let slot = rng.below(flows.len() as u64) as usize;
        let frame = match flows[slot].next_frame(&mut rng, &payload) {
            Some(f) => f,
            None => {
                // The flow ended (a final ACK or the RST was its last packet): a new one
                // takes its place, so concurrency stays constant.
                ended += 1;
                next_id += 1;
                flows[slot] = Flow::new(next_id, &mut rng, a.reset_share);
                continue;
            }
        };
        if frame[47] & RST != 0 {
            resets += 1;
        }
        let ts = Duration::from_micros(start_us + written * a.gap_us);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))?;
        written += 1;
        bytes += frame.len() as u64;
    }
    w.into_writer().flush()?;
    eprintln!(
        "replay_capture: {written} frames ({:.0} bytes on average), {} flows started, {ended} ended, {resets} RSTs, {} concurrent -> {}",
        bytes as f64 / written as f64,
        next_id,
        a.flows,
        a.out.display()
    );
    Ok(())
}
