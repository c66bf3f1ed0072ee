// This file owns the fleet commands: fpmux fleet deploy, status and
// rollback, the coordinator run from any machine that reaches etcd (it
// needs no admin socket).

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/fleet"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const fleetUsage = `usage: fpmux fleet <deploy|status|rollback> -etcd URLS -app APP [flags]

  deploy    prepare a release on every host, then switch them in batches
  status    the fleet's active release, each host's releases and the rollout
  rollback  converge an unfinished rollout back, or roll the fleet back

-etcd and -app default to $FPMUX_ETCD and $FPMUX_APP.
`

// fleetFlags are the flags every fleet command takes: how to reach etcd
// and which app.
type fleetFlags struct {
	etcd, app, prefix, ca, cert, key, username, passwordFile string
}

func (f *fleetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.etcd, "etcd", os.Getenv("FPMUX_ETCD"), "etcd endpoints, comma-separated (default $FPMUX_ETCD)")
	fs.StringVar(&f.app, "app", os.Getenv("FPMUX_APP"), "the fleet's app (default $FPMUX_APP)")
	fs.StringVar(&f.prefix, "prefix", config.DefaultFleetPrefix, "etcd key prefix, as the hosts' fleet.prefix")
	fs.StringVar(&f.ca, "ca", "", "CA file for etcd's TLS")
	fs.StringVar(&f.cert, "cert", "", "client certificate file for etcd's TLS")
	fs.StringVar(&f.key, "key", "", "client key file for etcd's TLS")
	fs.StringVar(&f.username, "username", "", "etcd user")
	fs.StringVar(&f.passwordFile, "password-file", "", "file holding the etcd user's password")
}

// client checks the flags as the fleet key is checked and connects,
// failing with a clear message when etcd does not answer.
func (f *fleetFlags) client(ctx context.Context) (*clientv3.Client, error) {
	fc := &config.Fleet{App: f.app, Host: "coordinator", Prefix: f.prefix, CA: f.ca, Cert: f.cert, Key: f.key,
		Username: f.username, PasswordFile: f.passwordFile}
	for _, e := range strings.Split(f.etcd, ",") {
		if e = strings.TrimSpace(e); e != "" {
			fc.Etcd = append(fc.Etcd, e)
		}
	}
	if len(fc.Etcd) == 0 || f.app == "" {
		return nil, errors.New("-etcd and -app are required (or FPMUX_ETCD and FPMUX_APP)")
	}
	if err := config.CheckFleetName("app", f.app); err != nil {
		return nil, err
	}
	c, err := etcdClient(fc)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The probe reads the app's own keys: an etcd user may be granted
	// those only.
	if _, err := c.Get(pctx, path.Join(fc.Prefix, f.app)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		c.Close()
		return nil, probeError(fc.Etcd, path.Join(fc.Prefix, f.app)+"/", err)
	}
	return c, nil
}

// probeError says why the first read of the app's keys (under prefix)
// failed: an etcd that answered with a refusal of the user is reachable,
// and the fix is in the credentials or the user's role, not the network.
func probeError(endpoints []string, prefix string, err error) error {
	at := strings.Join(endpoints, ",")
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("etcd at %s refused to let fpmux read %s: %w (give -username and -password-file, or grant the user a role on that prefix)", at, prefix, err)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("etcd at %s refused fpmux's credentials: %w (check -username and -password-file)", at, err)
	}
	return fmt.Errorf("etcd unreachable at %s: %w", at, err)
}

func runFleet(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 {
		fmt.Fprint(stderr, fleetUsage)
		return 2
	}
	name := args[0]
	fs := flag.NewFlagSet("fleet "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ff fleetFlags
	ff.register(fs)
	var o fleet.DeployOptions
	var asJSON bool
	var svg string
	switch name {
	case "deploy":
		g := config.DefaultGuard()
		fs.StringVar(&o.ID, "id", "", "release id")
		fs.StringVar(&o.Root, "root", "", "release root, the same path on every host")
		fs.IntVar(&o.Batch, "batch", 0, "hosts switched per batch after the canary (default: all at once)")
		fs.IntVar(&o.Canary, "canary", 0, "hosts in the canary batch, judged for -canary-wait first")
		fs.DurationVar(&o.CanaryWait, "canary-wait", 30*time.Second, "how long the canary is judged")
		fs.DurationVar(&o.BatchWait, "batch-wait", 0, "interval after each later batch but the last, every switched host judged as the canary (default: none)")
		fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound of the prepare, and of each batch's switch")
		fs.BoolVar(&o.Resume, "resume", false, "take over the unfinished rollout a coordinator left")
		fs.Float64Var(&o.MaxErrorRatio, "max-error-ratio", g.MaxErrorRatio, "canary: share of 5xx answers that fails it")
		fs.IntVar(&o.MinRequests, "min-requests", g.MinRequests, "canary: answers before its error ratio is judged")
		fs.IntVar(&o.MaxFatal, "max-fatal", g.MaxFatal, "canary: PHP fatal errors it may log")
	case "status":
		fs.BoolVar(&asJSON, "json", false, "print JSON")
		fs.StringVar(&svg, "svg", "", "also write a picture of the rollout (hosts over time, batches marked) to this SVG file")
	case "rollback":
		fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "bound of the rollback")
	default:
		if slices.Contains([]string{"-h", "-help", "--help", "help"}, name) {
			fmt.Fprint(stdout, fleetUsage)
			return 0
		}
		fmt.Fprintf(stderr, "fpmux fleet: unknown command %q\n%s", name, fleetUsage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if name == "deploy" && !o.Resume && (o.ID == "" || o.Root == "") {
		fmt.Fprintln(stderr, "fpmux fleet deploy: -id and -root are required (or -resume)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	c, err := ff.client(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fpmux fleet %s: %v\n", name, err)
		return 1
	}
	defer c.Close()
	co := fleet.NewCoordinator(c, ff.prefix, ff.app, stdout)
	switch name {
	case "deploy":
		err = co.Deploy(ctx, o)
	case "rollback":
		err = co.Rollback(ctx, o.Timeout)
	case "status":
		var st fleet.Status
		if st, err = co.Status(ctx); err == nil {
			err = printFleetStatus(stdout, st, asJSON)
		}
		if err == nil && svg != "" {
			err = writePicture(svg, st)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fpmux fleet %s: %v\n", name, err)
		return 1
	}
	return 0
}

func printFleetStatus(w io.Writer, st fleet.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "app %s: active %q", st.App, st.Active)
	if st.Previous != "" {
		fmt.Fprintf(w, ", previous %q", st.Previous)
	}
	fmt.Fprintln(w)
	if ro := st.Rollout; ro != nil {
		fmt.Fprintf(w, "rollout %s of %s: %s, %d of %d batches written", ro.Key, ro.ID, ro.State, ro.Batches, len(ro.Plan))
		if ro.Reason != "" {
			fmt.Fprintf(w, ": %s", ro.Reason)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tACTIVE\tSTATE\tRELEASES\tETCD\tREASON")
	for _, h := range st.Hosts {
		var rels []string
		for _, r := range h.Releases {
			rels = append(rels, fmt.Sprintf("%s(%s %d/%d/%d)", r.ID, r.State, r.Answered, r.Errors, r.Fatals))
		}
		up := "up"
		if !h.EtcdUp {
			up = "down"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, h.Active, h.State, strings.Join(rels, " "), up, h.Reason)
	}
	return tw.Flush()
}

// writePicture writes the picture of st's rollout to path.
func writePicture(path string, st fleet.Status) error {
	b, err := fleet.Picture(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write picture: %w", err)
	}
	return nil
}
