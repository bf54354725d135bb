package bench

import (
	"os"
	"testing"
)

func TestParseStatTicks(t *testing.T) {
	// A real line's shape: pid (comm) state ppid ... utime=14 stime=15 ...
	const base = " S 1 2 3 4 5 6 7 8 9 10 1234 56 0 0 20 0 8 0 100 2000000 500"
	tests := []struct {
		name, in string
		want     uint64
		wantErr  bool
	}{
		{"plain", "4242 (weftd)" + base, 1290, false},
		{"name with spaces and parentheses", "4242 (we ft) (x))" + base, 1290, false},
		{"no name", "4242 weftd S 1", 0, true},
		{"short", "4242 (weftd) S 1 2 3", 0, true},
		{"not a number", "4242 (weftd) S 1 2 3 4 5 6 7 8 9 10 x 56 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatTicks = %d, %v; want %d, error %t", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatusKiB(t *testing.T) {
	const status = "Name:\tweftd\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n"
	if got, err := parseStatusKiB(status, "VmRSS"); err != nil || got != 12345 {
		t.Errorf("VmRSS = %d, %v", got, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Error("a missing line is an error")
	}
	if _, err := parseStatusKiB("VmRSS: 12 MB\n", "VmRSS"); err == nil {
		t.Error("an unknown unit is an error")
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := procCPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss, err := procRSSKiB(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("own RSS %d, %v", rss, err)
	}
	if hz, src := clockTicks(); hz <= 0 || src == "" {
		t.Fatalf("clock ticks %d (%s)", hz, src)
	}
}
