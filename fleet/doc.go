// Package fleet owns fpmux's fleet mode on etcd: the host agent that
// prepares and switches this host's releases as the fleet's record in etcd
// says, and the coordinator (fpmux fleet deploy, status, rollback) that
// writes that record, batch by batch, from any machine that reaches etcd.
//
// # Keys
//
// Every key of one app lies under <prefix>/<app>/ (prefix: fleet.prefix,
// default /fpmux); values are JSON.
//
//	hosts/<host>  a HostRecord, put under the host's lease: a host that dies
//	              or loses etcd for longer than the lease's TTL disappears.
//	              The host rewrites it every second (its figures) and at
//	              each step (preparing, ready, failed, switched).
//	rollout       the coordinator's Rollout: id, release, root, previous
//	              release, hosts taking part, planned batches, how many
//	              were written, state and reason. Hosts prepare the release
//	              of a rollout in state preparing or switching.
//	batch/<n>     a Batch: the hosts that switch in batch n of the rollout
//	              it names. Each is written in one transaction with the
//	              rollout's update, so a host never sees half a batch.
//	active        the fleet's Active release (and the one before it),
//	              written when a rollout is done: what a host that joins or
//	              restarts converges to before it takes traffic.
//	lock/         concurrency.Mutex of the coordinators, under a session
//	              lease: a second coordinator is refused, and a dead one's
//	              lock goes with its lease.
//
// The host side is level-triggered: at each change it sees (and every
// second) it compares what the keys ask with what it serves, so a host that
// missed events (etcd down, a restart) converges when it next reads them.
package fleet
