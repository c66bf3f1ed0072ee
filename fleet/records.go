package fleet

// This file owns the records kept in etcd (see doc.go) and their keys.

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rollout states.
const (
	StatePreparing   = "preparing"    // every host prepares the release
	StateSwitching   = "switching"    // batches are being written
	StateDone        = "done"         // every host switched; active names the release
	StateAborted     = "aborted"      // a host failed to prepare: nothing switched, the release is retired
	StateRollingBack = "rolling_back" // switched hosts go back to the previous release
	StateRolledBack  = "rolled_back"  // every host is back on the previous release
)

// unfinished tells whether a rollout in state s still needs a coordinator.
func unfinished(s string) bool {
	return s == StatePreparing || s == StateSwitching || s == StateRollingBack
}

// Ref names a release and its root.
type Ref struct {
	Release string `json:"release"`
	Root    string `json:"root"`
}

// Rollout is the coordinator's record of one fleet deploy.
type Rollout struct {
	// Key tells rollouts of one release id apart: id@start.
	Key      string     `json:"key"`
	ID       string     `json:"id"` // the release deployed
	Root     string     `json:"root"`
	Previous Ref        `json:"previous"` // what the fleet served before: the way back
	Hosts    []string   `json:"hosts"`    // the hosts taking part, live at the start
	Plan     [][]string `json:"plan"`     // the batches, canary first
	Canary   int        `json:"canary"`
	Batches  int        `json:"batches_done"` // batches written so far
	State    string     `json:"state"`
	Reason   string     `json:"reason,omitempty"`
	Started  time.Time  `json:"started"`
	Updated  time.Time  `json:"updated"`
}

// Batch is one batch of a rollout: the hosts that switch together.
type Batch struct {
	Rollout string    `json:"rollout"` // Rollout.Key
	N       int       `json:"n"`       // 1-based
	Hosts   []string  `json:"hosts"`
	At      time.Time `json:"at"`
}

// Active is the release the fleet serves once a rollout is done.
type Active struct {
	Ref
	Previous Ref       `json:"previous"`
	Rollout  string    `json:"rollout"`
	At       time.Time `json:"at"`
}

// Prepare states in a HostRecord.
const (
	PrepPreparing = "preparing"
	PrepReady     = "ready"
	PrepFailed    = "failed"
)

// HostRecord is what a host publishes under its key.
type HostRecord struct {
	Host   string `json:"host"`
	Active string `json:"active"` // the release it serves
	// State is "serving", or where its part in the current rollout is:
	// preparing, ready, failed.
	State string `json:"state"`
	// Rollout, Prepare and Reason: the rollout (Rollout.Key) the host
	// acted on, how preparing its release went, and why it failed.
	Rollout  string           `json:"rollout,omitempty"`
	Release  string           `json:"release,omitempty"`
	Prepare  string           `json:"prepare,omitempty"`
	Reason   string           `json:"reason,omitempty"`
	Releases []ReleaseFigures `json:"releases"`
	// Switches are the host's latest activations, oldest first, timed by
	// its own clock: the switch spread is measured from them.
	Switches []Switch  `json:"switches,omitempty"`
	EtcdUp   bool      `json:"etcd_up"`
	At       time.Time `json:"at"`
}

// ReleaseFigures are one live release's figures on a host: its state and
// the counts the guard judges (answers, 5xx answers, PHP fatal errors).
type ReleaseFigures struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Answered int64  `json:"answered"`
	Errors   int64  `json:"errors"`
	Fatals   int64  `json:"fatals"`
}

// Switch is one activation on a host: Seen is when the change that asked
// for it arrived from etcd, At when new requests went to the release (its
// switch recorded in state_dir first).
type Switch struct {
	Release string    `json:"release"`
	Rollout string    `json:"rollout,omitempty"`
	Batch   int       `json:"batch,omitempty"`
	Seen    time.Time `json:"seen"`
	At      time.Time `json:"at"`
}

// maxSwitches bounds HostRecord.Switches.
const maxSwitches = 20

// figures returns the host's figures of release id, if it runs it.
func (h *HostRecord) figures(id string) (ReleaseFigures, bool) {
	i := slices.IndexFunc(h.Releases, func(f ReleaseFigures) bool { return f.ID == id })
	if i < 0 {
		return ReleaseFigures{}, false
	}
	return h.Releases[i], true
}

// keys are the etcd keys of one app.
type keys struct{ app string }

func newKeys(prefix, app string) keys {
	return keys{app: path.Join(prefix, app) + "/"}
}

func (k keys) all() string                { return k.app }
func (k keys) hosts() string              { return k.app + "hosts/" }
func (k keys) host(name string) string    { return k.app + "hosts/" + name }
func (k keys) rollout() string            { return k.app + "rollout" }
func (k keys) batches() string            { return k.app + "batch/" }
func (k keys) batch(n int) string         { return fmt.Sprintf("%sbatch/%06d", k.app, n) }
func (k keys) active() string             { return k.app + "active" }
func (k keys) lock() string               { return k.app + "lock/" }
func (k keys) isHost(key string) bool     { return strings.HasPrefix(key, k.hosts()) }
func (k keys) isBatch(key string) bool    { return strings.HasPrefix(key, k.batches()) }
func (k keys) hostName(key string) string { return strings.TrimPrefix(key, k.hosts()) }

// view is every record of one app, as read at one revision.
type view struct {
	rollout *Rollout
	active  *Active
	batches []Batch // in order
	hosts   map[string]HostRecord
}

// parseView decodes an app's keys; a record that does not decode is
// skipped (and named in bad).
func parseView(k keys, kvs map[string][]byte) (v view, bad []string) {
	v.hosts = map[string]HostRecord{}
	for key, val := range kvs {
		var err error
		switch {
		case key == k.rollout():
			v.rollout = &Rollout{}
			if err = json.Unmarshal(val, v.rollout); err != nil {
				v.rollout = nil
			}
		case key == k.active():
			v.active = &Active{}
			if err = json.Unmarshal(val, v.active); err != nil {
				v.active = nil
			}
		case k.isBatch(key):
			var b Batch
			if err = json.Unmarshal(val, &b); err == nil {
				v.batches = append(v.batches, b)
			}
		case k.isHost(key):
			var h HostRecord
			if err = json.Unmarshal(val, &h); err == nil {
				v.hosts[k.hostName(key)] = h
			}
		}
		if err != nil {
			bad = append(bad, key+": "+err.Error())
		}
	}
	slices.SortFunc(v.batches, func(a, b Batch) int { return a.N - b.N })
	return v, bad
}

// batchOf returns the batch of the current rollout that names host, if
// one was written.
func (v view) batchOf(host string) (Batch, bool) {
	if v.rollout == nil {
		return Batch{}, false
	}
	for _, b := range v.batches {
		if b.Rollout == v.rollout.Key && slices.Contains(b.Hosts, host) {
			return b, true
		}
	}
	return Batch{}, false
}

// plan splits hosts into batches: canary hosts first, then at most batch
// hosts each (0: all the rest at once).
func plan(hosts []string, canary, batch int) [][]string {
	var out [][]string
	rest := slices.Clone(hosts)
	if canary > 0 {
		n := min(canary, len(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	if batch <= 0 {
		batch = len(rest)
	}
	for len(rest) > 0 {
		n := min(batch, len(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	return out
}

// rolloutKey makes a Rollout.Key.
func rolloutKey(id string, at time.Time) string {
	return id + "@" + strconv.FormatInt(at.UnixNano(), 10)
}
