package fleet

// This file owns the coordinator: fpmux fleet deploy and rollback, run
// from any machine that reaches etcd. It holds the app's lock for the
// whole rollout, writes the rollout record and its batches, and judges the
// hosts by what they publish.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrLocked: another coordinator holds the app's lock.
var ErrLocked = errors.New("another fleet deploy or rollback holds the app's lock")

// lockTTL is the coordinator's session lease: a coordinator that dies
// frees the lock this long after.
const lockTTL = 5

// opTimeout bounds one etcd call of the coordinator: one that etcd does
// not answer in time fails the command, with the rollout left for
// fleet deploy -resume or fleet rollback.
const opTimeout = 5 * time.Second

// pollEvery is how often the coordinator reads the hosts' records.
const pollEvery = 20 * time.Millisecond

// Coordinator runs rollouts of one app.
type Coordinator struct {
	c   *clientv3.Client
	k   keys
	app string
	out io.Writer
}

// NewCoordinator returns a coordinator of app; progress lines go to out.
func NewCoordinator(c *clientv3.Client, prefix, app string, out io.Writer) *Coordinator {
	if prefix == "" {
		prefix = "/fpmux"
	}
	if out == nil {
		out = io.Discard
	}
	return &Coordinator{c: c, k: newKeys(prefix, app), app: app, out: out}
}

// DeployOptions is what fleet deploy asks for.
type DeployOptions struct {
	ID, Root   string
	Batch      int           // hosts per batch after the canary; 0: all at once
	Canary     int           // hosts in the canary batch; 0: none
	CanaryWait time.Duration // how long the canary is judged
	// BatchWait is the interval after each later batch but the last,
	// during which every switched host is judged as the canary is; 0:
	// the next batch is written as soon as one has switched.
	BatchWait time.Duration
	Timeout   time.Duration // bounds the prepare, and each batch's switch; default 5m
	Resume    bool          // take over the unfinished rollout
	// The canary's bounds, as the guard's: a share of 5xx answers over
	// MaxErrorRatio once MinRequests were answered, or more than MaxFatal
	// PHP fatal errors, fails it.
	MaxErrorRatio float64
	MinRequests   int
	MaxFatal      int
}

// rollout is one rollout being run: its record and the lock it runs under.
type rollout struct {
	co    *Coordinator
	ro    Rollout
	owner clientv3.Cmp // the lock is still ours
	o     DeployOptions
}

// lock takes the app's lock, or fails with ErrLocked at once.
func (co *Coordinator) lock(ctx context.Context) (clientv3.Cmp, func(), error) {
	sess, err := concurrency.NewSession(co.c, concurrency.WithTTL(lockTTL), concurrency.WithContext(ctx))
	if err != nil {
		return clientv3.Cmp{}, nil, fmt.Errorf("lock app %s: %w", co.app, err)
	}
	m := concurrency.NewMutex(sess, co.k.lock())
	if err := m.TryLock(ctx); err != nil {
		sess.Close()
		if errors.Is(err, concurrency.ErrLocked) {
			return clientv3.Cmp{}, nil, fmt.Errorf("lock app %s: %w (a coordinator that died frees it within %ds)", co.app, ErrLocked, lockTTL)
		}
		return clientv3.Cmp{}, nil, fmt.Errorf("lock app %s: %w", co.app, err)
	}
	return m.IsOwner(), func() {
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m.Unlock(uctx)
		sess.Close()
	}, nil
}

// read returns every record of the app.
func (co *Coordinator) read(ctx context.Context) (view, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := co.c.Get(ctx, co.k.all(), clientv3.WithPrefix())
	if err != nil {
		return view{}, fmt.Errorf("read app %s from etcd (unreachable?): %w", co.app, err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv.Value
	}
	v, _ := parseView(co.k, kvs)
	return v, nil
}

func (co *Coordinator) printf(format string, args ...any) {
	fmt.Fprintf(co.out, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// Deploy runs a rollout of o.ID: prepare everywhere, then the canary and
// the batches; an error says what failed and what was done about it.
func (co *Coordinator) Deploy(ctx context.Context, o DeployOptions) error {
	owner, unlock, err := co.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return co.deployLocked(ctx, owner, o)
}

func (co *Coordinator) deployLocked(ctx context.Context, owner clientv3.Cmp, o DeployOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	v, err := co.read(ctx)
	if err != nil {
		return err
	}
	r := &rollout{co: co, owner: owner, o: o}
	if cur := v.rollout; cur != nil && unfinished(cur.State) {
		if !o.Resume {
			return fmt.Errorf("fleet deploy %s: rollout %s of app %s is unfinished (%s, %d of %d batches written): run fpmux fleet deploy -resume or fpmux fleet rollback",
				o.ID, cur.ID, co.app, cur.State, cur.Batches, len(cur.Plan))
		}
		if o.ID != "" && o.ID != cur.ID {
			return fmt.Errorf("fleet deploy -resume %s: the unfinished rollout is of %s", o.ID, cur.ID)
		}
		r.ro = *cur
		co.printf("resuming rollout %s of %s (%s, %d of %d batches written)", cur.Key, cur.ID, cur.State, cur.Batches, len(cur.Plan))
	} else {
		if o.Resume {
			return fmt.Errorf("fleet deploy -resume: app %s has no unfinished rollout", co.app)
		}
		hosts := make([]string, 0, len(v.hosts))
		for h := range v.hosts {
			hosts = append(hosts, h)
		}
		slices.Sort(hosts)
		if len(hosts) == 0 {
			return fmt.Errorf("fleet deploy %s: app %s has no live host in etcd", o.ID, co.app)
		}
		var prev Ref
		if v.active != nil {
			prev = v.active.Ref
		}
		now := time.Now()
		r.ro = Rollout{Key: rolloutKey(o.ID, now), ID: o.ID, Root: o.Root, Previous: prev, Hosts: hosts,
			Plan: plan(hosts, o.Canary, o.Batch), Canary: min(o.Canary, len(hosts)), State: StatePreparing, Started: now}
		if err := r.put(ctx, clientv3.OpDelete(co.k.batches(), clientv3.WithPrefix())); err != nil {
			return err
		}
		co.printf("rollout %s: preparing %s on %d hosts (%s); %d batches", r.ro.Key, o.ID, len(hosts), strings.Join(hosts, ", "), len(r.ro.Plan))
	}
	return r.run(ctx)
}

// put writes the rollout record (with ops, in one transaction) while the
// lock is ours.
func (r *rollout) put(ctx context.Context, ops ...clientv3.Op) error {
	r.ro.Updated = time.Now()
	b, err := json.Marshal(r.ro)
	if err != nil {
		return fmt.Errorf("encode rollout: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := r.co.c.Txn(ctx).If(r.owner).Then(append(ops, clientv3.OpPut(r.co.k.rollout(), string(b)))...).Commit()
	if err != nil {
		return fmt.Errorf("write rollout %s: %w", r.ro.Key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("write rollout %s: the app's lock is no longer ours (its lease expired)", r.ro.Key)
	}
	return nil
}

func (r *rollout) run(ctx context.Context) error {
	ro := &r.ro
	if ro.State == StateRollingBack {
		return r.rollBack(ctx, ro.Reason)
	}
	if ro.State == StatePreparing {
		if err := r.waitPrepared(ctx); err != nil {
			return r.abort(ctx, err)
		}
		ro.State = StateSwitching
		if err := r.put(ctx); err != nil {
			return err
		}
	}
	if ro.Batches > 0 { // resumed: the last batch written may not have switched
		if err := r.waitSwitched(ctx, ro.Batches); err != nil {
			return r.rollBack(ctx, err.Error())
		}
	}
	for ro.Batches < len(ro.Plan) {
		n := ro.Batches + 1
		b, _ := json.Marshal(Batch{Rollout: ro.Key, N: n, Hosts: ro.Plan[n-1], At: time.Now()})
		ro.Batches = n
		if err := r.put(ctx, clientv3.OpPut(r.co.k.batch(n), string(b))); err != nil {
			return err
		}
		r.co.printf("batch %d/%d: %s", n, len(ro.Plan), strings.Join(ro.Plan[n-1], ", "))
		if err := r.waitSwitched(ctx, n); err != nil {
			return r.rollBack(ctx, err.Error())
		}
		if n == 1 && ro.Canary > 0 {
			if err := r.judge(ctx, 1, r.o.CanaryWait, "canary"); err != nil {
				return r.rollBack(ctx, err.Error())
			}
		} else if n < len(ro.Plan) && r.o.BatchWait > 0 {
			if err := r.judge(ctx, n, r.o.BatchWait, fmt.Sprintf("batch %d", n)); err != nil {
				return r.rollBack(ctx, err.Error())
			}
		}
	}
	act, _ := json.Marshal(Active{Ref: Ref{ro.ID, ro.Root}, Previous: ro.Previous, Rollout: ro.Key, At: time.Now()})
	ro.State = StateDone
	if err := r.put(ctx, clientv3.OpPut(r.co.k.active(), string(act))); err != nil {
		return err
	}
	r.co.printf("rollout %s: done, the fleet serves %s", ro.Key, ro.ID)
	return nil
}

// poll calls check with the app's records until it returns done or an
// error, or the bound passes (then timeout() is the error).
func (r *rollout) poll(ctx context.Context, bound time.Duration, check func(v view) (bool, error), timeout func(v view) error) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		v, err := r.co.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if v, err := r.co.read(context.Background()); err == nil {
					return timeout(v)
				}
			}
			return fmt.Errorf("rollout %s: %w", r.ro.Key, err)
		}
		if done, err := check(v); err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if v, err := r.co.read(context.Background()); err == nil {
				return timeout(v)
			}
			return fmt.Errorf("rollout %s: %w", r.ro.Key, ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// waitPrepared waits until every live host of the rollout is ready.
func (r *rollout) waitPrepared(ctx context.Context) error {
	ro := r.ro
	pending := func(v view) []string {
		var p []string
		for _, h := range ro.Hosts {
			if rec, ok := v.hosts[h]; ok && !(rec.Rollout == ro.Key && rec.Prepare == PrepReady) && rec.Active != ro.ID {
				p = append(p, h+" ("+rec.State+")")
			}
		}
		return p
	}
	return r.poll(ctx, r.o.Timeout, func(v view) (bool, error) {
		live := 0
		for _, h := range ro.Hosts {
			rec, ok := v.hosts[h]
			if !ok {
				continue
			}
			live++
			if rec.Rollout == ro.Key && rec.Prepare == PrepFailed {
				return false, fmt.Errorf("host %s could not prepare %s: %s", h, ro.ID, rec.Reason)
			}
		}
		if live == 0 {
			return false, fmt.Errorf("no host of rollout %s is live", ro.Key)
		}
		if len(pending(v)) == 0 {
			r.co.printf("prepared %s on %d hosts", ro.ID, live)
			return true, nil
		}
		return false, nil
	}, func(v view) error {
		return fmt.Errorf("%s not ready on every host within %s: %s", ro.ID, r.o.Timeout, strings.Join(pending(v), ", "))
	})
}

// waitSwitched waits until every live host of batch n serves the release.
func (r *rollout) waitSwitched(ctx context.Context, n int) error {
	ro := r.ro
	hosts := ro.Plan[n-1]
	gone := map[string]bool{}
	return r.poll(ctx, r.o.Timeout, func(v view) (bool, error) {
		if err := r.failedHost(v, n); err != nil {
			return false, err
		}
		for _, h := range hosts {
			rec, ok := v.hosts[h]
			switch {
			case !ok:
				if !gone[h] {
					gone[h] = true
					r.co.printf("host %s is gone (its key expired): it converges to the fleet's release when it comes back", h)
				}
			case rec.Active == ro.ID:
			default:
				return false, nil
			}
		}
		r.co.printf("batch %d/%d switched%s", n, len(ro.Plan), spreadNote(v, ro.Key, n))
		return true, nil
	}, func(v view) error {
		var late []string
		for _, h := range hosts {
			if rec, ok := v.hosts[h]; ok && rec.Active != ro.ID {
				late = append(late, h+" (on "+rec.Active+")")
			}
		}
		return fmt.Errorf("batch %d: not switched to %s within %s: %s", n, ro.ID, r.o.Timeout, strings.Join(late, ", "))
	})
}

// failedHost returns the failure a host of batches 1 to n reported for
// the rollout: its switch failed, or its own guard switched it back
// afterwards (the reason says which).
func (r *rollout) failedHost(v view, n int) error {
	for _, hosts := range r.ro.Plan[:n] {
		for _, h := range hosts {
			if rec, ok := v.hosts[h]; ok && rec.Rollout == r.ro.Key && rec.Prepare == PrepFailed {
				return fmt.Errorf("host %s failed on %s: %s", h, r.ro.ID, rec.Reason)
			}
		}
	}
	return nil
}

// Spread returns the first and last activation of batch n of a rollout,
// by the hosts' own clocks, and how many hosts reported one.
func Spread(hosts map[string]HostRecord, rolloutKey string, n int) (first, last time.Time, count int) {
	return spreadOf(hosts, rolloutKey, n, func(s Switch) time.Time { return s.At })
}

// SeenSpread is Spread of when the hosts saw batch n arrive from etcd.
func SeenSpread(hosts map[string]HostRecord, rolloutKey string, n int) (first, last time.Time, count int) {
	return spreadOf(hosts, rolloutKey, n, func(s Switch) time.Time { return s.Seen })
}

func spreadOf(hosts map[string]HostRecord, rolloutKey string, n int, when func(Switch) time.Time) (first, last time.Time, count int) {
	for _, rec := range hosts {
		for _, s := range rec.Switches {
			if s.Rollout != rolloutKey || s.Batch != n {
				continue
			}
			at := when(s)
			if count == 0 || at.Before(first) {
				first = at
			}
			if count == 0 || at.After(last) {
				last = at
			}
			count++
		}
	}
	return first, last, count
}

func spreadNote(v view, key string, n int) string {
	first, last, count := Spread(v.hosts, key, n)
	if count < 2 {
		return ""
	}
	return fmt.Sprintf(" (%d hosts within %s)", count, last.Sub(first).Round(time.Microsecond))
}

// judge watches the figures of the release on the hosts of batches 1 to
// n (the canary's, or every host switched so far) for wait, and fails,
// its message starting with what, when they pass the canary's bounds or
// a host left the release.
func (r *rollout) judge(ctx context.Context, n int, wait time.Duration, what string) error {
	ro := r.ro
	var hosts []string
	for _, b := range ro.Plan[:n] {
		hosts = append(hosts, b...)
	}
	base := map[string]ReleaseFigures{}
	if v, err := r.co.read(ctx); err == nil {
		for _, h := range hosts {
			if rec, ok := v.hosts[h]; ok {
				base[h], _ = rec.figures(ro.ID)
			}
		}
	}
	var sum ReleaseFigures
	judge := func(v view) error {
		if err := r.failedHost(v, n); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		sum = ReleaseFigures{}
		for _, h := range hosts {
			rec, ok := v.hosts[h]
			if !ok {
				continue
			}
			if rec.Active != ro.ID {
				return fmt.Errorf("%s: host %s no longer serves %s (it serves %q)", what, h, ro.ID, rec.Active)
			}
			f, _ := rec.figures(ro.ID)
			b := base[h]
			sum.Answered += f.Answered - b.Answered
			sum.Errors += f.Errors - b.Errors
			sum.Fatals += f.Fatals - b.Fatals
		}
		if sum.Fatals > int64(r.o.MaxFatal) {
			return fmt.Errorf("%s: %d PHP fatal errors on %s (max-fatal %d)", what, sum.Fatals, strings.Join(hosts, ", "), r.o.MaxFatal)
		}
		if sum.Answered >= int64(max(r.o.MinRequests, 1)) && float64(sum.Errors)/float64(sum.Answered) > r.o.MaxErrorRatio {
			return fmt.Errorf("%s: %d of %d answers on %s were 5xx, over max-error-ratio %.4g%%",
				what, sum.Errors, sum.Answered, strings.Join(hosts, ", "), 100*r.o.MaxErrorRatio)
		}
		return nil
	}
	end := time.Now().Add(wait)
	for {
		v, err := r.co.read(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := judge(v); err != nil {
			return err
		}
		if !time.Now().Before(end) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(min(250*time.Millisecond, time.Until(end)+time.Millisecond)):
		}
	}
	r.co.printf("%s passed: %d answers, %d 5xx, %d PHP fatal errors on %s in %s", what, sum.Answered, sum.Errors, sum.Fatals, strings.Join(hosts, ", "), wait)
	return nil
}

// abort ends a rollout that switched nothing: every host retires the
// release.
func (r *rollout) abort(ctx context.Context, why error) error {
	r.ro.State, r.ro.Reason = StateAborted, why.Error()
	if err := r.put(ctx); err != nil {
		return errors.Join(why, err)
	}
	r.co.printf("rollout %s aborted: %v; nothing switched, %s is retired on every host", r.ro.Key, why, r.ro.ID)
	return fmt.Errorf("fleet deploy %s aborted: %w; nothing switched", r.ro.ID, why)
}

// rollBack sends every switched host back to the previous release and
// waits until none serves the rollout's release.
func (r *rollout) rollBack(ctx context.Context, why string) error {
	ro := &r.ro
	ro.State, ro.Reason = StateRollingBack, why
	if err := r.put(ctx); err != nil {
		return fmt.Errorf("%s; rolling back: %w", why, err)
	}
	r.co.printf("rolling back to %q: %s", ro.Previous.Release, why)
	err := r.poll(ctx, r.o.Timeout, func(v view) (bool, error) {
		for _, h := range ro.Hosts {
			if rec, ok := v.hosts[h]; ok && rec.Active == ro.ID {
				return false, nil
			}
		}
		return true, nil
	}, func(v view) error {
		var on []string
		for _, h := range ro.Hosts {
			if rec, ok := v.hosts[h]; ok && rec.Active == ro.ID {
				on = append(on, h)
			}
		}
		return fmt.Errorf("hosts still on %s after %s: %s", ro.ID, r.o.Timeout, strings.Join(on, ", "))
	})
	if err != nil {
		return fmt.Errorf("fleet deploy %s: %s; rolling back to %s failed: %w", ro.ID, why, ro.Previous.Release, err)
	}
	ro.State = StateRolledBack
	if err := r.put(ctx); err != nil {
		return fmt.Errorf("fleet deploy %s: %s; rolled back: %w", ro.ID, why, err)
	}
	r.co.printf("rolled back: every host serves %q", ro.Previous.Release)
	return fmt.Errorf("fleet deploy %s rolled back to %s: %s", ro.ID, ro.Previous.Release, why)
}

// Rollback converges an unfinished rollout back to the release before it,
// or, when none is unfinished, rolls the fleet back to the release before
// its active one, all hosts at once.
func (co *Coordinator) Rollback(ctx context.Context, timeout time.Duration) error {
	owner, unlock, err := co.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	v, err := co.read(ctx)
	if err != nil {
		return err
	}
	if ro := v.rollout; ro != nil && unfinished(ro.State) {
		r := &rollout{co: co, ro: *ro, owner: owner, o: DeployOptions{Timeout: timeout}}
		if ro.Batches == 0 {
			err := r.abort(ctx, errors.New("fpmux fleet rollback"))
			if r.ro.State == StateAborted {
				return nil
			}
			return err
		}
		err := r.rollBack(ctx, "fpmux fleet rollback")
		if r.ro.State == StateRolledBack {
			return nil
		}
		return err
	}
	if v.active == nil || v.active.Previous.Release == "" {
		return fmt.Errorf("fleet rollback: app %s has no previous release to roll back to", co.app)
	}
	co.printf("rolling the fleet back from %s to %s", v.active.Release, v.active.Previous.Release)
	return co.deployLocked(ctx, owner, DeployOptions{ID: v.active.Previous.Release, Root: v.active.Previous.Root, Timeout: timeout})
}

// Status is what fleet status shows.
type Status struct {
	App      string       `json:"app"`
	Active   string       `json:"active"`
	Previous string       `json:"previous,omitempty"`
	Hosts    []HostRecord `json:"hosts"`
	Rollout  *Rollout     `json:"rollout"`
	Batches  []Batch      `json:"batches,omitempty"`
}

// Status reads the app's records.
func (co *Coordinator) Status(ctx context.Context) (Status, error) {
	v, err := co.read(ctx)
	if err != nil {
		return Status{}, err
	}
	st := Status{App: co.app, Hosts: []HostRecord{}, Rollout: v.rollout}
	if v.active != nil {
		st.Active, st.Previous = v.active.Release, v.active.Previous.Release
	}
	for _, h := range v.hosts {
		st.Hosts = append(st.Hosts, h)
	}
	slices.SortFunc(st.Hosts, func(a, b HostRecord) int { return strings.Compare(a.Host, b.Host) })
	if v.rollout != nil {
		for _, b := range v.batches {
			if b.Rollout == v.rollout.Key {
				st.Batches = append(st.Batches, b)
			}
		}
	}
	return st, nil
}
