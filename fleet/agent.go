package fleet

// This file owns the host agent: one fpmux host's part in its fleet. It
// keeps the host's key under a lease, watches the app's keys, prepares the
// release a rollout asks for, switches when its batch is written, goes
// back when the rollout is rolled back, and converges to the fleet's
// active release when it joins or restarts.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/fpmux/fpmux/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Releases is what the agent needs of the host's supervisor.
type Releases interface {
	// Prepare starts release id's pool from root and runs its health
	// checks and warm-up, without activating it; nil when the release is
	// ready (or active) already.
	Prepare(ctx context.Context, id, root string) error
	// Activate switches new requests to ready release id; with keep, the
	// release it replaces stays ready until Unhold.
	Activate(id string, keep bool) error
	// Unhold lets a release kept by Activate go as keep_previous says.
	Unhold(id string)
	// Retire drains and stops a release that is not active.
	Retire(id string) error
	// Active is the id of the release serving now, or "".
	Active() string
	// Figures are the live releases' states and counts.
	Figures() []ReleaseFigures
	// Why says why this host's guard rolled release id back (with the
	// figures), or "" when it did not.
	Why(id string) string
}

// Options configures an Agent.
type Options struct {
	Client   *clientv3.Client // required
	Prefix   string           // default /fpmux
	App      string           // required
	Host     string           // required
	Releases Releases         // required
	Logger   *slog.Logger     // default slog.Default()
	// Registerer gets the fpmux_fleet_* metrics; nil registers none.
	Registerer prometheus.Registerer
	// LeaseTTL is the host key's lease: how long after the host stops
	// renewing it (dead, or cut off from etcd) its key disappears.
	// Default: 5s.
	LeaseTTL time.Duration
	// PublishEvery is how often the host rewrites its key with its
	// figures. Default: 1s.
	PublishEvery time.Duration
	// PrepareTimeout bounds one prepare. Default: 2m.
	PrepareTimeout time.Duration
}

// Agent is a fleet host's agent; Run runs it.
type Agent struct {
	o    Options
	k    keys
	log  *slog.Logger
	m    *metrics.Fleet
	kick chan struct{} // publish now
	// resync asks the watcher to read every key again: etcd came back.
	resync chan struct{}
	events chan watchUpdate
	preps  chan prepDone

	// Owned by Run's goroutine.
	kvs   map[string][]byte
	view  view
	done  map[string]bool   // steps taken once per rollout: "switch:"+key
	held  map[string]string // rollout key -> the release its switch kept
	prepC context.CancelFunc
	read  bool // a full read of the app's keys arrived: the view is whole
	// rolloutKey is the rollout the agent last read.
	rolloutKey string
	// seen is when the latest change from etcd arrived: a switch records
	// when its batch was seen as well as when it was made.
	seen time.Time

	mu        sync.Mutex // guards what the publisher reads
	prep      prepState
	switches  []Switch
	etcdUp    bool
	etcdSince time.Time     // when etcdUp last changed
	synced    chan struct{} // closed once the host serves the fleet's active release
}

type prepState struct {
	key, release, state, reason string
}

type prepDone struct {
	key string
	err error
}

type watchUpdate struct {
	snapshot map[string][]byte // a full read, or nil
	events   []*clientv3.Event
	failed   error // the first read failed: etcd is unreachable at start
}

// New checks o and returns an Agent.
func New(o Options) (*Agent, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("fleet agent: Options.Client is required")
	case o.Releases == nil:
		return nil, errors.New("fleet agent: Options.Releases is required")
	case o.App == "" || o.Host == "":
		return nil, errors.New("fleet agent: Options.App and Options.Host are required")
	}
	if o.Prefix == "" {
		o.Prefix = "/fpmux"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 5 * time.Second
	}
	if o.PublishEvery <= 0 {
		o.PublishEvery = time.Second
	}
	if o.PrepareTimeout <= 0 {
		o.PrepareTimeout = 2 * time.Minute
	}
	a := &Agent{
		o: o, k: newKeys(o.Prefix, o.App), log: o.Logger.With("component", "fleet", "app", o.App, "host", o.Host),
		kick: make(chan struct{}, 1), resync: make(chan struct{}, 1),
		events: make(chan watchUpdate, 16), preps: make(chan prepDone, 4),
		kvs: map[string][]byte{}, done: map[string]bool{}, held: map[string]string{},
		synced: make(chan struct{}),
	}
	a.m = metrics.NewFleet()
	if o.Registerer != nil {
		if err := a.m.Register(o.Registerer); err != nil {
			return nil, fmt.Errorf("fleet agent: register metrics: %w", err)
		}
	}
	a.m.Prepares.WithLabelValues(PrepReady)
	a.m.Prepares.WithLabelValues(PrepFailed)
	return a, nil
}

// Synced is closed once the host serves the fleet's active release (at
// once when the fleet has none yet), or when etcd did not answer its first
// read (the host serves the release it restored): a host that joins or
// restarts takes traffic then.
func (a *Agent) Synced() <-chan struct{} { return a.synced }

// Info is the agent as fpmux status shows it.
type Info struct {
	App    string `json:"app"`
	Host   string `json:"host"`
	Prefix string `json:"prefix"`
	// EtcdUp: the host's last write to etcd succeeded; EtcdSince is when
	// that last changed (zero before the first write was tried).
	EtcdUp    bool      `json:"etcd_up"`
	EtcdSince time.Time `json:"etcd_since"`
	Endpoints []string  `json:"endpoints"`
}

// Info returns the agent's state.
func (a *Agent) Info() Info {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Info{App: a.o.App, Host: a.o.Host, Prefix: a.o.Prefix, EtcdUp: a.etcdUp, EtcdSince: a.etcdSince,
		Endpoints: a.o.Client.Endpoints()}
}

// Run runs the agent until ctx ends, then revokes the host's lease (its
// key goes at once) and returns once every goroutine it started is done.
func (a *Agent) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.watch(ctx) }()
	go func() { defer wg.Done(); a.publish(ctx) }()
	tick := time.NewTicker(a.o.PublishEvery)
	defer tick.Stop()
	var prepWG sync.WaitGroup
	for {
		select {
		case <-ctx.Done():
			if a.prepC != nil {
				a.prepC()
			}
			prepWG.Wait()
			wg.Wait()
			return
		case u := <-a.events:
			a.apply(u)
		case p := <-a.preps:
			a.prepared(p)
		case <-tick.C:
		}
		a.reconcile(ctx, &prepWG)
	}
}

// apply brings the agent's copy of the app's keys up to date.
func (a *Agent) apply(u watchUpdate) {
	a.seen = time.Now()
	if u.failed != nil {
		a.log.Warn("fleet: etcd unreachable at start; serving the restored release until it answers",
			"release", a.o.Releases.Active(), "err", u.failed)
		a.markSynced()
		return
	}
	if u.snapshot != nil {
		a.kvs, a.read = u.snapshot, true
	}
	for _, ev := range u.events {
		if ev.Type == clientv3.EventTypeDelete {
			delete(a.kvs, string(ev.Kv.Key))
		} else {
			a.kvs[string(ev.Kv.Key)] = ev.Kv.Value
		}
	}
	var bad []string
	a.view, bad = parseView(a.k, a.kvs)
	for _, b := range bad {
		a.log.Warn("fleet: a record does not decode; ignored", "err", b)
	}
}

// reconcile compares what the app's keys ask with what the host serves,
// and takes the next step.
func (a *Agent) reconcile(ctx context.Context, prepWG *sync.WaitGroup) {
	if !a.read {
		return
	}
	v := a.view
	cur := a.o.Releases.Active()
	ro := v.rollout
	if ro != nil && ro.Key != a.rolloutKey {
		a.newRollout(ro.Key)
	}
	if ro != nil && slices.Contains(ro.Hosts, a.o.Host) {
		switch ro.State {
		case StatePreparing, StateSwitching:
			a.ensurePrepared(ctx, prepWG, ro.Key, Ref{ro.ID, ro.Root})
			if b, ok := v.batchOf(a.o.Host); ok && cur != ro.ID && a.prepReady(ro.Key) && !a.done["switch:"+ro.Key] {
				a.done["switch:"+ro.Key] = true
				a.activate(ro.ID, true, ro.Key, b.N)
			} else if ok && cur != ro.ID && a.prepReady(ro.Key) {
				a.switchedBack(ro)
			}
			return
		case StateRollingBack, StateRolledBack:
			a.cancelPrepare(ro.Key)
			back := ro.Previous.Release
			if cur == ro.ID && back != "" {
				a.ensurePrepared(ctx, prepWG, ro.Key+"/back", ro.Previous)
				if a.prepReady(ro.Key + "/back") {
					a.activate(back, false, ro.Key, 0)
				}
				return
			}
			a.retire(ro.ID, ro.Key)
			a.unhold(ro.Key)
		case StateAborted:
			a.cancelPrepare(ro.Key)
			if cur != ro.ID {
				a.retire(ro.ID, ro.Key)
			}
		case StateDone:
			a.unhold(ro.Key)
		}
	}
	if ro != nil && unfinished(ro.State) && slices.Contains(ro.Hosts, a.o.Host) {
		return
	}
	// Converge to the fleet's active release: a host that joined, restarted
	// or missed a rollout.
	if v.active == nil || v.active.Release == "" {
		a.markSynced()
		return
	}
	if cur == v.active.Release {
		a.markSynced()
		return
	}
	key := "converge:" + v.active.Rollout
	if why := a.o.Releases.Why(v.active.Release); why != "" {
		a.keepGuardsWord(key, v.active.Release, why)
		return
	}
	a.ensurePrepared(ctx, prepWG, key, v.active.Ref)
	if a.prepReady(key) {
		a.activate(v.active.Release, false, v.active.Rollout, 0)
	}
}

// newRollout forgets what the agent did for earlier rollouts, letting go
// of a release a switch of theirs kept (its end may have been missed while
// etcd was unreachable).
func (a *Agent) newRollout(key string) {
	a.rolloutKey = key
	for k := range a.done {
		delete(a.done, k)
	}
	for k := range a.held {
		if k != key {
			a.unhold(k)
		}
	}
}

// cancelPrepare stops the prepare of rollout key if it still runs: the
// rollout ended without it.
func (a *Agent) cancelPrepare(key string) {
	a.mu.Lock()
	running := a.prep.key == key && a.prep.state == PrepPreparing
	a.mu.Unlock()
	if running && a.prepC != nil {
		a.prepC()
		a.prepC = nil
	}
}

func (a *Agent) markSynced() {
	select {
	case <-a.synced:
	default:
		close(a.synced)
	}
}

// ensurePrepared has ref prepared under key, once: at once when it is
// active or ready here already, otherwise by a Prepare on its own
// goroutine (one at a time: a newer key cancels an older prepare).
func (a *Agent) ensurePrepared(ctx context.Context, prepWG *sync.WaitGroup, key string, ref Ref) {
	a.mu.Lock()
	same := a.prep.key == key
	a.mu.Unlock()
	if same {
		return
	}
	if a.prepC != nil {
		a.prepC()
		a.prepC = nil
	}
	if a.o.Releases.Active() == ref.Release || slices.ContainsFunc(a.o.Releases.Figures(), func(f ReleaseFigures) bool {
		return f.ID == ref.Release && f.State == PrepReady
	}) {
		a.setPrep(prepState{key: key, release: ref.Release, state: PrepReady})
		return
	}
	a.setPrep(prepState{key: key, release: ref.Release, state: PrepPreparing})
	a.log.Info("fleet: preparing", "rollout", key, "release", ref.Release, "root", ref.Root)
	pctx, cancel := context.WithTimeout(ctx, a.o.PrepareTimeout)
	a.prepC = cancel
	prepWG.Add(1)
	go func() {
		defer prepWG.Done()
		defer cancel()
		err := a.o.Releases.Prepare(pctx, ref.Release, ref.Root)
		select {
		case a.preps <- prepDone{key, err}:
		case <-ctx.Done():
		}
	}()
}

// prepared records how a prepare ended.
func (a *Agent) prepared(p prepDone) {
	a.mu.Lock()
	if a.prep.key != p.key {
		a.mu.Unlock()
		return
	}
	st := a.prep
	a.mu.Unlock()
	if p.err != nil {
		st.state, st.reason = PrepFailed, p.err.Error()
		a.log.Warn("fleet: prepare failed", "rollout", p.key, "release", st.release, "err", p.err)
	} else {
		st.state = PrepReady
		a.log.Info("fleet: ready", "rollout", p.key, "release", st.release)
	}
	a.m.Prepares.WithLabelValues(st.state).Inc()
	a.setPrep(st)
}

func (a *Agent) setPrep(p prepState) {
	a.mu.Lock()
	a.prep = p
	a.mu.Unlock()
	a.publishNow()
}

func (a *Agent) prepReady(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prep.key == key && a.prep.state == PrepReady
}

// activate switches to id and records the switch, timed by this host's
// clock; a switch that fails is reported as a failed prepare.
func (a *Agent) activate(id string, keep bool, rollout string, batch int) {
	prev := a.o.Releases.Active()
	err := a.o.Releases.Activate(id, keep)
	at := time.Now()
	if err != nil {
		a.log.Error("fleet: switch failed", "rollout", rollout, "batch", batch, "release", id, "err", err)
		a.mu.Lock()
		a.prep.state, a.prep.reason = PrepFailed, "switch: "+err.Error()
		a.mu.Unlock()
		a.publishNow()
		return
	}
	if keep && prev != "" {
		a.held[rollout] = prev
	}
	a.m.Switches.Inc()
	a.mu.Lock()
	a.switches = append(a.switches, Switch{Release: id, Rollout: rollout, Batch: batch, Seen: a.seen, At: at})
	if len(a.switches) > maxSwitches {
		a.switches = a.switches[len(a.switches)-maxSwitches:]
	}
	a.mu.Unlock()
	a.log.Info("fleet: switched", "rollout", rollout, "batch", batch, "release", id, "previous", prev, "kept", keep && prev != "")
	a.publishNow()
}

// switchedBack reports, as a failure of the host's part in rollout ro,
// that the host left ro's release after its batch switched it: its own
// guard rolled the release back. The coordinator then rolls every switched
// host back.
func (a *Agent) switchedBack(ro *Rollout) {
	why := a.o.Releases.Why(ro.ID)
	if why == "" {
		why = "the host serves " + a.o.Releases.Active() + " again"
	}
	a.mu.Lock()
	a.prep.state, a.prep.reason = PrepFailed, "switched back: "+why
	a.mu.Unlock()
	a.log.Error("fleet: switched back from the rollout's release", "rollout", ro.Key, "release", ro.ID, "why", why)
	a.publishNow()
}

// keepGuardsWord leaves the host on the release its guard switched back
// to, when the guard rolled back the fleet's active release after its
// rollout was done: converging would deploy the release again, unguarded.
// The host says so under its key (failed, with the guard's reason) until
// the fleet's active release changes or fpmux restarts.
func (a *Agent) keepGuardsWord(key, release, why string) {
	a.markSynced()
	a.mu.Lock()
	same := a.prep.key == key && a.prep.state == PrepFailed
	a.mu.Unlock()
	if same {
		return
	}
	a.log.Error("fleet: not converging to the fleet's release: this host's guard rolled it back",
		"rollout", key, "release", release, "serving", a.o.Releases.Active(), "why", why)
	a.setPrep(prepState{key: key, release: release, state: PrepFailed, reason: "guard: " + why})
}

// retire retires release id, when it is ready here, after its rollout was
// aborted or rolled back; one still starting is retired once its prepare
// ends.
func (a *Agent) retire(id, rollout string) {
	if !slices.ContainsFunc(a.o.Releases.Figures(), func(f ReleaseFigures) bool { return f.ID == id && f.State == PrepReady }) {
		return
	}
	if err := a.o.Releases.Retire(id); err != nil {
		a.log.Info("fleet: release not retired", "rollout", rollout, "release", id, "err", err)
		return
	}
	a.log.Info("fleet: retired", "rollout", rollout, "release", id)
	a.publishNow()
}

// unhold lets the release a rollout's switch kept go.
func (a *Agent) unhold(rollout string) {
	if id, ok := a.held[rollout]; ok {
		delete(a.held, rollout)
		a.o.Releases.Unhold(id)
	}
}

// record is the host's record as published now.
func (a *Agent) record() HostRecord {
	figs := a.o.Releases.Figures()
	if figs == nil {
		figs = []ReleaseFigures{}
	}
	h := HostRecord{Host: a.o.Host, Active: a.o.Releases.Active(), Releases: figs, At: time.Now()}
	a.mu.Lock()
	defer a.mu.Unlock()
	h.Rollout, h.Release, h.Prepare, h.Reason = a.prep.key, a.prep.release, a.prep.state, a.prep.reason
	h.Switches = slices.Clone(a.switches)
	h.EtcdUp = a.etcdUp
	h.State = "serving"
	if a.prep.state != "" && a.prep.release != h.Active {
		h.State = a.prep.state
	}
	return h
}

func (a *Agent) publishNow() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// publish writes the host's key under its lease every PublishEvery and
// whenever a step asks, renewing the lease, and granting a new one when
// etcd lost it (it was cut off longer than the lease's TTL).
func (a *Agent) publish(ctx context.Context) {
	tick := time.NewTicker(a.o.PublishEvery)
	defer tick.Stop()
	var lease clientv3.LeaseID
	for {
		renew := false
		select {
		case <-ctx.Done():
			if lease != 0 {
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				a.o.Client.Revoke(rctx, lease)
				cancel()
			}
			return
		case <-tick.C:
			renew = true
		case <-a.kick:
		}
		err := a.put(ctx, &lease, renew)
		a.setEtcdUp(err)
	}
}

// put writes the host's record once.
func (a *Agent) put(ctx context.Context, lease *clientv3.LeaseID, renew bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if *lease != 0 && renew {
		if _, err := a.o.Client.KeepAliveOnce(ctx, *lease); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			*lease = 0
		} else if err != nil {
			return fmt.Errorf("renew lease: %w", err)
		}
	}
	if *lease == 0 {
		g, err := a.o.Client.Grant(ctx, int64(max(a.o.LeaseTTL/time.Second, 1)))
		if err != nil {
			return fmt.Errorf("grant lease: %w", err)
		}
		*lease = g.ID
	}
	b, err := json.Marshal(a.record())
	if err != nil {
		return fmt.Errorf("encode host record: %w", err)
	}
	if _, err := a.o.Client.Put(ctx, a.k.host(a.o.Host), string(b), clientv3.WithLease(*lease)); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			*lease = 0
		}
		return fmt.Errorf("put host record: %w", err)
	}
	return nil
}

// setEtcdUp records whether etcd answered, logging each change; when it
// comes back, the watcher reads every key again.
func (a *Agent) setEtcdUp(err error) {
	up := err == nil
	a.mu.Lock()
	was := a.etcdUp
	if up != was || a.etcdSince.IsZero() {
		a.etcdSince = time.Now()
	}
	a.etcdUp = up
	a.mu.Unlock()
	if up {
		a.m.EtcdUp.Set(1)
	} else {
		a.m.EtcdUp.Set(0)
	}
	switch {
	case up && !was:
		a.log.Info("fleet: etcd reachable", "endpoints", a.o.Client.Endpoints())
		select {
		case a.resync <- struct{}{}:
		default:
		}
	case !up && was:
		a.log.Warn("fleet: etcd unreachable; serving the active release as before", "release", a.o.Releases.Active(), "err", err)
	}
}

// watch feeds the app's keys to Run: a full read, then every change from
// the next revision on; again from a full read after an error or when etcd
// comes back.
func (a *Agent) watch(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := a.o.Client.Get(gctx, a.k.all(), clientv3.WithPrefix())
		cancel()
		if err != nil && first {
			first = false
			if !a.send(ctx, watchUpdate{failed: err}) {
				return
			}
		}
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			case <-a.resync:
			}
			continue
		}
		first = false
		snap := make(map[string][]byte, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			snap[string(kv.Key)] = kv.Value
		}
		if !a.send(ctx, watchUpdate{snapshot: snap}) {
			return
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := a.o.Client.Watch(wctx, a.k.all(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	events:
		for {
			select {
			case wr, ok := <-wch:
				if !ok || wr.Err() != nil {
					break events
				}
				if !a.send(ctx, watchUpdate{events: wr.Events}) {
					wcancel()
					return
				}
			case <-a.resync:
				break events
			case <-ctx.Done():
				break events
			}
		}
		wcancel()
	}
}

func (a *Agent) send(ctx context.Context, u watchUpdate) bool {
	select {
	case a.events <- u:
		return true
	case <-ctx.Done():
		return false
	}
}
