// Package health serves weft's liveness and readiness endpoints and holds the readiness
// facts they report.
//
// The daemon records facts in a State as they change (lease held, subnet file written,
// backend active, a subnet change, the last error); the Server reads a Snapshot per request.
// The package only reports: it never acts on the state, and /healthz answers 200 for as long
// as the process serves HTTP at all.
package health

import (
	"net/netip"
	"sync"
	"time"
)

// Names of the readiness facts, as listed by Snapshot.Missing and the /readyz text.
const (
	FactLease      = "lease"
	FactSubnetFile = "subnet file"
	FactBackend    = "backend"
)

// State holds the readiness facts. It is safe for concurrent use; the zero value is ready to
// use, with no fact held, and reads the wall clock.
type State struct {
	now func() time.Time // set once by NewState, read-only after

	mu sync.Mutex // guards all fields below
	s  Snapshot   // Ready and Missing are derived in Snapshot, not stored
}

// NewState returns a State whose timestamps come from now (time.Now when nil).
func NewState(now func() time.Time) *State {
	return &State{now: now}
}

// Snapshot is a copy of a State, as served in JSON by /readyz?verbose.
type Snapshot struct {
	// Ready is true when the lease is held, the subnet file written and the backend active.
	Ready bool `json:"ready"`
	// Missing names the facts that do not hold (FactLease, FactSubnetFile, FactBackend).
	Missing []string `json:"missing,omitempty"`

	LeaseHeld  bool         `json:"leaseHeld"`
	Subnet     netip.Prefix `json:"subnet,omitzero"` // the lease's subnet while held
	LeaseSince time.Time    `json:"leaseSince,omitzero"`

	SubnetFileWritten bool      `json:"subnetFileWritten"`
	SubnetFile        string    `json:"subnetFile,omitempty"` // its path
	SubnetFileSince   time.Time `json:"subnetFileSince,omitzero"`

	BackendActive bool      `json:"backendActive"`
	Backend       string    `json:"backend,omitempty"` // its type, e.g. "vxlan"
	BackendSince  time.Time `json:"backendSince,omitzero"`

	// SubnetChange is the latest change of the node's subnet, if any.
	SubnetChange *SubnetChange `json:"subnetChange,omitempty"`

	// LastError is the latest error reported, kept until cleared.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// SubnetChange records that the node moved from one subnet to another.
type SubnetChange struct {
	From netip.Prefix `json:"from"`
	To   netip.Prefix `json:"to"`
	At   time.Time    `json:"at"`
}

func (st *State) clock() time.Time {
	if st.now == nil {
		return time.Now()
	}
	return st.now()
}

// SetLease records that the lease for subnet is held; an invalid (zero) prefix records
// that no lease is held.
func (st *State) SetLease(subnet netip.Prefix) {
	t := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	held := subnet.IsValid()
	if !held {
		subnet = netip.Prefix{}
	}
	if held != st.s.LeaseHeld || subnet != st.s.Subnet {
		st.s.LeaseSince = t
	}
	st.s.LeaseHeld, st.s.Subnet = held, subnet
}

// SetSubnetFile records that the subnet file at path was written; an empty path records
// that it was not (or is stale).
func (st *State) SetSubnetFile(path string) {
	t := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.SubnetFileWritten = path != ""
	st.s.SubnetFile = path
	st.s.SubnetFileSince = t
}

// SetBackend records that the backend of the given type is active, or not.
func (st *State) SetBackend(backendType string, active bool) {
	t := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if active != st.s.BackendActive || backendType != st.s.Backend {
		st.s.BackendSince = t
	}
	st.s.BackendActive, st.s.Backend = active, backendType
}

// NoteSubnetChange records that the node's subnet changed from one prefix to another. It
// does not change the lease fact; call SetLease for that.
func (st *State) NoteSubnetChange(from, to netip.Prefix) {
	t := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.SubnetChange = &SubnetChange{From: from, To: to, At: t}
}

// SetError records err as the last error; nil clears it. The error does not affect
// readiness.
func (st *State) SetError(err error) {
	t := st.clock()
	st.mu.Lock()
	defer st.mu.Unlock()
	if err == nil {
		st.s.LastError, st.s.LastErrorAt = "", time.Time{}
		return
	}
	st.s.LastError, st.s.LastErrorAt = err.Error(), t
}

// Snapshot returns a copy of the state with Ready and Missing filled in.
func (st *State) Snapshot() Snapshot {
	st.mu.Lock()
	s := st.s
	st.mu.Unlock()
	if s.SubnetChange != nil {
		c := *s.SubnetChange
		s.SubnetChange = &c
	}
	if !s.LeaseHeld {
		s.Missing = append(s.Missing, FactLease)
	}
	if !s.SubnetFileWritten {
		s.Missing = append(s.Missing, FactSubnetFile)
	}
	if !s.BackendActive {
		s.Missing = append(s.Missing, FactBackend)
	}
	s.Ready = len(s.Missing) == 0
	return s
}
