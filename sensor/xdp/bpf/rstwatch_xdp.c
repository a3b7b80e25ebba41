// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
//
// rstwatch XDP program: TCP to the AF_XDP socket of the receiving queue, everything else
// per configuration (drop by default: a mirror port has no business delivering frames to
// the host stack; pass when asked).
//
// Remote mirroring (issue 11): frames that may carry mirrored TCP in a tunnel go to the
// socket too, undecoded: GRE (ERSPAN I/II/III, GRE) over IPv4/IPv6, UDP to a VXLAN or
// Geneve port, MPLS and PPPoE session ethertypes. The tunnels are peeled in user space by
// the same parser that reads pcap files (one decoder, fuzzed, with a named counter for
// every rejection); doing it here would duplicate that decoder under the verifier's
// limits (nesting, Geneve options and MPLS stacks are loops of variable length) for no
// gain: on a port fed by a remote mirror nearly every tunnelled frame is mirrored TCP,
// so filtering the rest in BPF would save little. Fan-out hashes the inner four-tuple
// in user space for the same reason.
//
// Self-contained on purpose: no libbpf headers (no libbpf-dev needed), no kernel headers
// (the bpf target has no asm/ include directory on Debian). Built by build.rs with
// `clang -O2 -g -target bpf`; -g gives the BTF that the `.maps` definitions need.
//
// Every TCP segment carries a 16-byte metadata block before the frame: the
// bpf_ktime_get_ns() timestamp (CLOCK_MONOTONIC) taken here, and a magic word, so user
// space stamps each frame with the time it arrived rather than the time it was read.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define __always_inline inline __attribute__((always_inline))

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

enum { XDP_ABORTED = 0, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum { BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_XSKMAP = 17 };

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) = (void *)54;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// One entry per receive queue; user space puts each queue's socket at its queue id.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} rstwatch_xsks SEC(".maps");

// Counters, per CPU; indices are the RW_CNT_* values (user space: ProgCounters).
enum {
	RW_CNT_TCP = 0,        // TCP frames handed to bpf_redirect_map
	RW_CNT_NON_TCP_DROP,   // non-TCP frames dropped
	RW_CNT_NON_TCP_PASS,   // non-TCP frames passed to the stack
	RW_CNT_NO_META,        // TCP frames sent without a timestamp (adjust_meta failed)
	RW_CNT_TUNNEL,         // tunnel frames (maybe TCP inside) handed to bpf_redirect_map
	RW_CNT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rstwatch_counters SEC(".maps");

// Set by the loader before the program is loaded (read-only data).
volatile const __u32 rstwatch_pass_non_tcp = 0;
// UDP destination ports of VXLAN and Geneve (0 = unused slot).
volatile const __u16 rstwatch_vxlan_ports[4] = { 4789, 0, 0, 0 };
volatile const __u16 rstwatch_geneve_ports[4] = { 6081, 0, 0, 0 };

#define RW_META_MAGIC 0x52535457u /* "RSTW" */

struct rw_meta {
	__u64 ts_ns;
	__u32 magic;
	__u32 pad;
};

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_MPLS_UC 0x8847
#define ETH_P_MPLS_MC 0x8848
#define ETH_P_PPPOE_SES 0x8864
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_GRE 47

// What a frame is to this program.
enum { RW_OTHER = 0, RW_TCP = 1, RW_TUNNEL = 2 };

static __always_inline __u16 rd16(const __u8 *p)
{
	return (__u16)((p[0] << 8) | p[1]);
}

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&rstwatch_counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline int tunnel_port(__u16 port)
{
	if (port == 0)
		return 0;
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (rstwatch_vxlan_ports[i] == port || rstwatch_geneve_ports[i] == port)
			return 1;
	}
	return 0;
}

// RW_TUNNEL for GRE, or UDP to a tunnel port at `l4` (the transport header).
static __always_inline int ip_tunnel(__u8 proto, const __u8 *l4, const __u8 *end)
{
	if (proto == IPPROTO_GRE)
		return RW_TUNNEL;
	if (proto != IPPROTO_UDP || l4 + 4 > end)
		return RW_OTHER;
	return tunnel_port(rd16(l4 + 2)) ? RW_TUNNEL : RW_OTHER;
}

// RW_TCP when the frame is TCP over IPv4/IPv6 (optionally behind up to two VLAN tags
// and up to four IPv6 extension headers), RW_TUNNEL when it may carry TCP in a tunnel
// (see the top of this file), else RW_OTHER. Anything malformed is "other" here; the
// engine names the exact reason for frames it does get.
static __always_inline int classify(const __u8 *data, const __u8 *end)
{
	const __u8 *p = data + 12;
	if (p + 2 > end)
		return RW_OTHER;
	__u16 proto = rd16(p);
	p += 2;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (p + 4 > end)
			return RW_OTHER;
		proto = rd16(p + 2);
		p += 4;
	}
	if (proto == ETH_P_MPLS_UC || proto == ETH_P_MPLS_MC || proto == ETH_P_PPPOE_SES)
		return RW_TUNNEL;
	if (proto == ETH_P_IP) {
		if (p + 20 > end)
			return RW_OTHER;
		if (p[9] == IPPROTO_TCP)
			return RW_TCP;
		return ip_tunnel(p[9], p + (p[0] & 0x0f) * 4, end);
	}
	if (proto != ETH_P_IPV6)
		return RW_OTHER;
	if (p + 40 > end)
		return RW_OTHER;
	__u8 nh = p[6];
	p += 40;
	if (nh == IPPROTO_GRE || nh == IPPROTO_UDP)
		return ip_tunnel(nh, p, end);
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (nh == IPPROTO_TCP)
			return RW_TCP;
		if (nh == 44) { // fragment header: fixed 8 bytes
			if (p + 8 > end)
				return RW_OTHER;
			nh = p[0];
			p += 8;
		} else if (nh == 0 || nh == 43 || nh == 60) { // hop-by-hop, routing, dest opts
			if (p + 8 > end)
				return RW_OTHER;
			nh = p[0];
			p += 8 + (__u32)p[1] * 8;
		} else {
			return RW_OTHER;
		}
	}
	return nh == IPPROTO_TCP ? RW_TCP : RW_OTHER;
}

SEC("xdp")
int rstwatch_xdp(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;

	int what = classify(data, end);
	if (what == RW_OTHER) {
		if (rstwatch_pass_non_tcp) {
			count(RW_CNT_NON_TCP_PASS);
			return XDP_PASS;
		}
		count(RW_CNT_NON_TCP_DROP);
		return XDP_DROP;
	}
	count(what == RW_TCP ? RW_CNT_TCP : RW_CNT_TUNNEL);

	__u64 now = bpf_ktime_get_ns();
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct rw_meta)) == 0) {
		struct rw_meta *m = (struct rw_meta *)(long)ctx->data_meta;
		const __u8 *d = (const __u8 *)(long)ctx->data;
		if ((const __u8 *)(m + 1) <= d) {
			m->ts_ns = now;
			m->magic = RW_META_MAGIC;
			m->pad = 0;
		}
	} else {
		count(RW_CNT_NO_META);
	}
	// No socket on this queue: drop (or pass, as configured) rather than abort.
	return bpf_redirect_map(&rstwatch_xsks, ctx->rx_queue_index,
				rstwatch_pass_non_tcp ? XDP_PASS : XDP_DROP);
}

char _license[] SEC("license") = "Dual BSD/GPL";
