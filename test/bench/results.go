package bench

import "time"

// Results is everything one run measured; it is written as results.json. Units are in the
// field names: _gbps is 10^9 bits per second, _ms milliseconds, _s seconds, per_gb per 10^9
// bytes received.
type Results struct {
	Started    time.Time   `json:"started"`
	Finished   time.Time   `json:"finished"`
	Seconds    float64     `json:"duration_s"`
	Dir        string      `json:"results_dir"`
	Command    string      `json:"command,omitempty"`
	Options    RunOptions  `json:"options"`
	Machine    Machine     `json:"machine"`
	Commands   Commands    `json:"commands"`
	Paths      []*Path     `json:"paths"`
	BatchRatio *BatchRatio `json:"udp_batch_vs_nobatch,omitempty"`
	Scale      *Scale      `json:"scale,omitempty"`
	KubeScale  *KubeScale  `json:"kube_scale,omitempty"` // kube.go
	// Errors lists every measurement that could not be made; empty on a clean run.
	Errors []string `json:"errors"`
}

// RunOptions records the options in plain units.
type RunOptions struct {
	DurationS      float64  `json:"duration_s"`
	Reps           int      `json:"reps"`
	Streams        []int    `json:"streams"`
	PingCount      int      `json:"ping_count"`
	PingIntervalMs float64  `json:"ping_interval_ms"`
	IdlePings      int      `json:"idle_pings"`
	Joins          int      `json:"joins"`
	Scale          int      `json:"scale"`
	Backends       []string `json:"backends"`
	TimeoutS       float64  `json:"timeout_s"`
	Quick          bool     `json:"quick"`
	Weftd          string   `json:"weftd"`
}

// Machine holds the facts that make two runs comparable (or not).
type Machine struct {
	NProc         int    `json:"nproc"`
	CPUModel      string `json:"cpu_model"`
	MemTotalKiB   int64  `json:"mem_total_kib"`
	Kernel        string `json:"kernel"`
	GoVersion     string `json:"go_version"`
	Iperf3Version string `json:"iperf3_version"`
	PingVersion   string `json:"ping_version"`
	EtcdVersion   string `json:"etcd_version"`
	WeftdVersion  string `json:"weftd_version"`
	// Source is `git describe --always --dirty` of the tree the bench ran from (weftd is
	// built from it unless -weftd is given); SourceChanged counts its modified tracked files.
	Source        string    `json:"source"`
	SourceChanged int       `json:"source_changed_files"`
	ClockTicks    int64     `json:"clk_tck"`
	ClockTicksSrc string    `json:"clk_tck_source"`
	LoadAvgStart  string    `json:"loadavg_start"`
	LoadAvgEnd    string    `json:"loadavg_end"`
	Started       time.Time `json:"started"`
}

// Commands are the exact command lines the run used, as templates (<...> is filled in per
// measurement; every measurement also records its own command line).
type Commands struct {
	Iperf3Server string `json:"iperf3_server"`
	Iperf3Client string `json:"iperf3_client"`
	Ping         string `json:"ping_latency"`
	ProbePing    string `json:"probe_first_reply"`
	Weftd        string `json:"weftd"`
	RouteWatch   string `json:"route_watch"`
	CPU          string `json:"cpu"`
	RSS          string `json:"rss"`
	Peers        string `json:"peers"`
}

// Path is one measured path: the underlay or a backend pod to pod.
type Path struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "underlay" or "backend"
	Config    string `json:"config,omitempty"`
	Userspace bool   `json:"userspace"`
	// IPv6: the traffic goes over IPv6 (pods of a dual-stack network, or the IPv6 underlay).
	IPv6 bool `json:"ipv6,omitempty"`
	// Skipped says why the path was not measured ("" when it was).
	Skipped    string        `json:"skipped,omitempty"`
	Errors     []string      `json:"errors,omitempty"`
	Endpoints  string        `json:"endpoints"`
	WeftdArgs  []string      `json:"weftd_args,omitempty"`
	MTU        int           `json:"mtu,omitempty"`
	Throughput []*Throughput `json:"throughput"`
	Latency    *Latency      `json:"latency,omitempty"`
	// IdleLatency is the round trip at IdlePingInterval, an idle path's (RatioToVXLAN set):
	// measured in every round and pooled (addIdle), so that the rounds, which interleave the
	// paths, spread the machine's changing load over all of them.
	IdleLatency *Latency     `json:"idle_latency,omitempty"`
	Convergence *Convergence `json:"convergence,omitempty"`
}

// addIdle pools one round's idle latency into p.IdleLatency.
func (p *Path) addIdle(lat *Latency) {
	lat.Rounds = 1
	if p.IdleLatency == nil {
		p.IdleLatency = lat
		return
	}
	l := p.IdleLatency
	l.samples = append(l.samples, lat.samples...)
	l.Sent += lat.Sent
	l.Received += lat.Received
	l.Rounds++
	l.RTTms = Summarize(l.samples)
}

// Throughput is one stream count on one path.
type Throughput struct {
	Streams int         `json:"streams"`
	Runs    []*IperfRun `json:"runs"`
	// Gbps summarises the receiver's rate over the runs.
	Gbps Summary `json:"gbps"`
	// RatioToUnderlay is the median over the underlay's median at the same stream count.
	RatioToUnderlay float64 `json:"ratio_to_underlay,omitempty"`
	// CPUPerGB summarises weftd's CPU seconds (both ends) per GB received; userspace only.
	CPUPerGB *Summary `json:"weftd_cpu_s_per_gb,omitempty"`
}

// IperfRun is one iperf3 client run.
type IperfRun struct {
	Command      string  `json:"command"`
	Seconds      float64 `json:"seconds"`
	BytesRecv    int64   `json:"bytes_received"`
	Gbps         float64 `json:"gbps"` // receiver
	SenderGbps   float64 `json:"sender_gbps"`
	Retransmits  int64   `json:"retransmits"`
	WeftdCPU     *CPU    `json:"weftd_cpu,omitempty"`
	ClientCPUPct float64 `json:"iperf3_client_cpu_pct"`
	ServerCPUPct float64 `json:"iperf3_server_cpu_pct"`
}

// CPU is weftd's CPU time (utime+stime from /proc/<pid>/stat) during one run.
type CPU struct {
	Ends     []ProcCPU `json:"ends"`
	Seconds  float64   `json:"total_s"`
	PerGB    float64   `json:"s_per_gb"`
	Interval float64   `json:"wall_s"`
}

// ProcCPU is one weftd's share.
type ProcCPU struct {
	Node    int     `json:"node"`
	PID     int     `json:"pid"`
	Seconds float64 `json:"cpu_s"`
}

// Latency is the round trip time from ping.
type Latency struct {
	Command         string  `json:"command"`
	Sent            int     `json:"sent"`
	Received        int     `json:"received"`
	RTTms           Summary `json:"rtt_ms"`
	RatioToUnderlay float64 `json:"p50_ratio_to_underlay,omitempty"`
	// RatioToVXLAN is p50 over the p50 of the vxlan path of the same family and kind of
	// measurement in the same run (idle latency only).
	RatioToVXLAN float64 `json:"p50_ratio_to_vxlan,omitempty"`
	// Rounds is how many rounds' replies RTTms pools (idle latency; Sent and Received are
	// their sums).
	Rounds int `json:"rounds,omitempty"`

	samples []float64 // the replies' round trip times, for pooling
}

// Convergence is the join (and leave) timing of one backend.
type Convergence struct {
	Method string  `json:"method"`
	Joins  []*Join `json:"joins"`
	// NodesMs: per join, t0 to the last other node having the peer programmed.
	NodesMs Summary `json:"nodes_ms"`
	// PodsMs: per join, t0 to the last existing pod's first reply from the new pod.
	PodsMs Summary `json:"pods_ms"`
	// PodsAfterPodMs: per join, the new pod's creation to the last pod's first reply: the
	// part of PodsMs that is not the bench making the pod.
	PodsAfterPodMs Summary `json:"pods_after_pod_created_ms"`
	// LeaveMs: per leave, the bench's Delete request to the last node having forgotten it.
	LeaveMs Summary `json:"leave_ms"`
	// LeaseMs: per join, weftd's start to its lease in etcd (t0).
	LeaseMs Summary `json:"start_to_lease_ms"`
}

// Join is one node joining and leaving.
type Join struct {
	Node     int     `json:"node"`
	Subnet   string  `json:"subnet,omitempty"`
	Revision int64   `json:"create_revision,omitempty"`
	LeaseMs  float64 `json:"start_to_lease_ms"`
	// NodesMs and PodsMs: t0 to each fixed node's entry and each pod's first reply; -1 when
	// it never came within the join timeout.
	NodesMs      []float64 `json:"nodes_ms"`
	PodsMs       []float64 `json:"pods_ms"`
	PodCreatedMs float64   `json:"pod_created_ms"`
	LeaveMs      float64   `json:"leave_ms"`
	Error        string    `json:"error,omitempty"`
}

// BatchRatio compares udp (batched) with udp Batch:false at each stream count.
type BatchRatio struct {
	Streams []BatchRatioAt `json:"streams"`
}

// BatchRatioAt is one stream count's ratios (batched / unbatched).
type BatchRatioAt struct {
	Streams    int     `json:"streams"`
	Throughput float64 `json:"throughput_ratio"`
	CPUPerGB   float64 `json:"cpu_per_gb_ratio"`
}

// Scale is the many-peers test.
type Scale struct {
	Peers     int    `json:"peers"`
	Backend   string `json:"backend"`
	Network   string `json:"network"`
	PublicIPs string `json:"fake_public_ips"`
	Method    string `json:"method"`
	// WriteS: the first Put to the last Put's answer (concurrent writers).
	WriteS float64 `json:"write_s"`
	// Programmed: from the first Put until weft_peers reached Peers, and until the kernel
	// had a route on flannel.1 for every peer; -1 when not within the scale timeout.
	PeersKnownS     float64 `json:"peers_known_s"`
	RoutesS         float64 `json:"routes_programmed_s"`
	RoutesAfterLast float64 `json:"routes_after_last_write_s"`
	WeftdCPUS       float64 `json:"weftd_cpu_s"`
	Routes          int     `json:"routes"`
	Neighbours      int     `json:"neighbours"`
	FDB             int     `json:"fdb_entries"`
	RSSIdleKiB      int64   `json:"rss_idle_kib"`
	RSSKiB          int64   `json:"rss_kib"`
	// JoinMs and LeaveMs: one more lease written (deleted) at full size, from the bench's
	// request to the route's appearance (disappearance) in the kernel.
	JoinMs  float64 `json:"join_ms"`
	LeaveMs float64 `json:"leave_ms"`
	// Restart: weftd restarted after flannel.1 was deleted (a reboot's state), from the
	// process start to every route back.
	RestartRoutesS float64       `json:"restart_routes_s"`
	RestartPeersS  float64       `json:"restart_peers_known_s"`
	RestartRSSKiB  int64         `json:"restart_rss_kib"`
	Progress       []ScaleSample `json:"progress"`
	Errors         []string      `json:"errors,omitempty"`
}

// ScaleSample is one poll while programming.
type ScaleSample struct {
	S      float64 `json:"s"`
	Peers  int     `json:"peers"`
	Routes int     `json:"routes"`
}
