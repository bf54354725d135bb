package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

const (
	iperfPort = 5201
	// iperfSlack is added to -t for the client's bound: connection, ramp and the result.
	iperfSlack     = 30 * time.Second
	listenTimeout  = 10 * time.Second
	serverExitWait = 5 * time.Second
)

// iperfResult is the part of `iperf3 -J` the bench reads.
type iperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int64   `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
}

// parseIperf reads a client's `iperf3 -J` output. It is pure.
func parseIperf(out []byte) (*IperfRun, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("iperf3 output is not JSON: %w: %.200q", err, out)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", r.Error)
	}
	recv := r.End.SumReceived
	if recv.Bytes <= 0 || recv.Seconds <= 0 {
		return nil, fmt.Errorf("iperf3 reported no data received (%d bytes in %.3fs)", recv.Bytes, recv.Seconds)
	}
	return &IperfRun{
		Seconds:      recv.Seconds,
		BytesRecv:    recv.Bytes,
		Gbps:         recv.BitsPerSecond / 1e9,
		SenderGbps:   r.End.SumSent.BitsPerSecond / 1e9,
		Retransmits:  r.End.SumSent.Retransmits,
		ClientCPUPct: r.End.CPU.HostTotal,
		ServerCPUPct: r.End.CPU.RemoteTotal,
	}, nil
}

// iperfServerArgv and iperfClientArgv are the commands run inside the namespaces.
func iperfServerArgv(bind netip.Addr) []string {
	return []string{"iperf3", "-s", "-1", "-B", bind.String(), "-p", strconv.Itoa(iperfPort)}
}

func iperfClientArgv(dst netip.Addr, d time.Duration, streams int) []string {
	return []string{"iperf3", "-c", dst.String(), "-p", strconv.Itoa(iperfPort),
		"-t", strconv.Itoa(int(d / time.Second)), "-P", strconv.Itoa(streams), "-J", "--connect-timeout", "5000"}
}

// nsCommand prepares argv to run inside namespace ns (ip netns exec execs argv, so the
// process's PID is the tool's). It is killed if this process dies or ctx ends.
func nsCommand(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// nsCommandLine renders a command as a person would type it.
func nsCommandLine(ns string, argv ...string) string {
	return "ip netns exec " + ns + " " + strings.Join(argv, " ")
}

// iperfOnce runs one iperf3 measurement from `from` to a one-off server on `to`. around, if
// not nil, is called just before the client starts and just after it ends (for CPU).
func iperfOnce(ctx context.Context, from, to *cluster.Pod, d time.Duration, streams int, around func(start bool)) (*IperfRun, error) {
	srvArgv := iperfServerArgv(to.IP)
	var srvOut bytes.Buffer
	srv := nsCommand(ctx, to.NS, srvArgv...)
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", nsCommandLine(to.NS, srvArgv...), err)
	}
	srvDone := make(chan struct{}) // closed once the server is reaped
	var srvErr error               // written before srvDone is closed
	go func() {
		srvErr = srv.Wait()
		close(srvDone)
	}()
	defer func() {
		select {
		case <-srvDone:
		case <-time.After(serverExitWait):
			_ = srv.Process.Kill()
			<-srvDone // bounded: Wait returns once the killed process is reaped (WaitDelay)
		}
	}()
	if err := waitListening(ctx, to, srvDone); err != nil {
		_ = srv.Process.Kill() // harmless if it has exited
		<-srvDone              // bounded: reaped right after the kill (WaitDelay)
		return nil, fmt.Errorf("iperf3 server on %s: %w (exit %v); its output: %s", to, err, srvErr, strings.TrimSpace(srvOut.String()))
	}

	cliArgv := iperfClientArgv(to.IP, d, streams)
	cctx, cancel := context.WithTimeout(ctx, d+iperfSlack)
	defer cancel()
	var cliOut, cliErr bytes.Buffer
	cli := nsCommand(cctx, from.NS, cliArgv...)
	cli.Stdout, cli.Stderr = &cliOut, &cliErr
	if around != nil {
		around(true)
	}
	runErr := cli.Run()
	if around != nil {
		around(false)
	}
	line := nsCommandLine(from.NS, cliArgv...)
	run, err := parseIperf(cliOut.Bytes())
	if err != nil {
		if runErr != nil {
			err = fmt.Errorf("%w (exit: %v; stderr: %s)", err, runErr, strings.TrimSpace(cliErr.String()))
		}
		return nil, fmt.Errorf("%s: %w", line, err)
	}
	run.Command = line
	return run, nil
}

// waitListening polls `ss` in the server's namespace until the port listens on the server's
// address, the server exits or listenTimeout passes.
func waitListening(ctx context.Context, to *cluster.Pod, srvDone <-chan struct{}) error {
	want := netip.AddrPortFrom(to.IP, iperfPort).String()
	deadline := time.Now().Add(listenTimeout)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := nsCommand(sctx, to.NS, "ss", "-Hltn").Output()
		cancel()
		if err == nil && bytes.Contains(out, []byte(want)) {
			return nil
		}
		select {
		case <-srvDone:
			return errors.New("exited before listening")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("not listening after " + listenTimeout.String())
		}
	}
}
