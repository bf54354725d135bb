package nftables

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/pkg/firewall"
)

// state is what a pass read of weft's table.
type state struct {
	table  *nftables.Table // nil: no table
	chains map[string]*nftables.Chain
	set    *nftables.Set // nil: no set
}

// read reads weft's table of family f, its chains and its set.
func read(c *nftables.Conn, f firewall.Family) (state, error) {
	var s state
	family := famDefs[f].table
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		return s, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			s.table = t
		}
	}
	if s.table == nil {
		return s, nil
	}
	chains, err := c.ListChainsOfTableFamily(family)
	if err != nil {
		return s, fmt.Errorf("list chains: %w", err)
	}
	s.chains = map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == TableName {
			s.chains[ch.Name] = ch
		}
	}
	sets, err := c.GetSets(s.table)
	if err != nil {
		return s, fmt.Errorf("list sets: %w", err)
	}
	for _, set := range sets {
		if set.Name == SetName {
			s.set = set
		}
	}
	return s, nil
}

// tableLabel names the table of family f as nft lists it: "ip weft", "ip6 weft".
func tableLabel(f firewall.Family) string {
	if f == firewall.IPv6 {
		return "ip6 " + TableName
	}
	return "ip " + TableName
}

// Cleanup removes weft's tables of both families (a teardown, or a switch to iptables
// mode). Call it after Run has returned, or Run puts the tables back.
func (m *Manager) Cleanup() error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	m.fams = [firewall.NumFamilies]famState{}
	return Cleanup(m.log)
}

// Cleanup removes weft's tables ("ip weft", "ip6 weft"), where there are any, in the
// calling thread's namespace.
func Cleanup(log klog.Logger) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	var errs []error
	for _, f := range firewall.Families {
		s, err := read(c, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("nftables %v: %w", f, err))
			continue
		}
		if s.table == nil {
			continue
		}
		c.DelTable(s.table)
		if err := c.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("nftables: delete table %s: %w", tableLabel(f), err))
			continue
		}
		log.Info("nftables table removed", "table", tableLabel(f))
	}
	return errors.Join(errs...)
}

// Leftovers returns a firewall.Cleaner that removes weft's tables: what iptables mode hands
// Options.Replaces, so that a switch from nftables mode leaves nothing behind.
func Leftovers(log klog.Logger) firewall.Cleaner { return leftovers{log} }

type leftovers struct{ log klog.Logger }

func (l leftovers) Cleanup() error { return Cleanup(l.log) }
