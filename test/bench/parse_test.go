package bench

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const pingOut = `PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.
64 bytes from 10.244.1.2: icmp_seq=1 ttl=62 time=0.118 ms
From 192.0.2.254 icmp_seq=2 Destination Net Unreachable
64 bytes from 10.244.1.2: icmp_seq=3 ttl=62 time=0.081 ms
64 bytes from 10.244.1.2: icmp_seq=4 ttl=62 time=1.20 ms

--- 10.244.1.2 ping statistics ---
4 packets transmitted, 3 received, +1 errors, 25% packet loss, time 31ms
rtt min/avg/max/mdev = 0.081/0.466/1.200/0.519 ms
`

func TestParsePingRTTs(t *testing.T) {
	rtts, sent, recv := parsePingRTTs(pingOut)
	if !slices.Equal(rtts, []float64{0.118, 0.081, 1.2}) || sent != 4 || recv != 3 {
		t.Errorf("got %v sent %d received %d", rtts, sent, recv)
	}
	if rtts, sent, recv := parsePingRTTs("ping: connect: Network is unreachable\n"); rtts != nil || sent != 0 || recv != 0 {
		t.Errorf("error output: %v %d %d", rtts, sent, recv)
	}
}

func TestPingArgv(t *testing.T) {
	got := strings.Join(pingArgv(netip.MustParseAddr("10.244.1.2"), 100, 10*time.Millisecond), " ")
	if want := "ping -n -c 100 -i 0.01 -W 1 -w 6 10.244.1.2"; got != want {
		t.Errorf("pingArgv = %q, want %q", got, want)
	}
}

// A trimmed `iperf3 -c ... -J` output of iperf 3.12.
const iperfJSON = `{"start":{"test_start":{"protocol":"TCP","num_streams":4,"duration":10}},
"intervals":[],
"end":{"streams":[],
"sum_sent":{"start":0,"end":10.0002,"seconds":10.0002,"bytes":12500000000,"bits_per_second":9999840003.2,"retransmits":17,"sender":true},
"sum_received":{"start":0,"end":10.0004,"seconds":10.0004,"bytes":12400000000,"bits_per_second":9919603215.87,"sender":true},
"cpu_utilization_percent":{"host_total":35.5,"host_user":1.2,"host_system":34.3,"remote_total":60.1,"remote_user":2,"remote_system":58.1}}}`

func TestParseIperf(t *testing.T) {
	run, err := parseIperf([]byte(iperfJSON))
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if run.Seconds != 10.0004 || run.BytesRecv != 12400000000 || !near(run.Gbps, 9.91960321587) ||
		!near(run.SenderGbps, 9.9998400032) || run.Retransmits != 17 || run.ClientCPUPct != 35.5 || run.ServerCPUPct != 60.1 {
		t.Errorf("parseIperf = %+v", *run)
	}
	for name, in := range map[string]string{
		"error":   `{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}`,
		"no data": `{"end":{"sum_received":{"bytes":0,"seconds":0}}}`,
		"garbage": `iperf3: error - unable to connect`,
	} {
		if _, err := parseIperf([]byte(in)); err == nil {
			t.Errorf("%s: parseIperf accepted %s", name, in)
		}
	}
	if got := strings.Join(iperfClientArgv(netip.MustParseAddr("10.244.1.2"), 10*time.Second, 4), " "); got != "iperf3 -c 10.244.1.2 -p 5201 -t 10 -P 4 -J --connect-timeout 5000" {
		t.Errorf("client argv %q", got)
	}
}
