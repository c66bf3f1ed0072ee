// This file owns `fpmux reload-pools` on both sides: the client command,
// and in serve, the admin API's ask to reread the configuration (served by
// serve's loop, which owns the configuration in force) and SIGHUP's
// reload of the pools under reload_pools: true.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/fpmux/fpmux/config"
	"github.com/fpmux/fpmux/supervisor"
)

// reloadAsk asks serve's loop to reread the configuration; it answers the
// reload's error, nil once the file is in force.
type reloadAsk struct{ reply chan error }

// askReload is what POST /v1/reload-pools calls before it starts the fresh
// pool: the configuration is reread by serve's loop, as on SIGHUP, so
// that the two never race. Once the loop has ended (fpmux stops) it
// answers that.
func askReload(asks chan<- reloadAsk, loopDone <-chan struct{}) func() error {
	return func() error {
		a := reloadAsk{reply: make(chan error, 1)}
		select {
		case asks <- a:
		case <-loopDone:
			return errors.New("fpmux is stopping")
		}
		return <-a.reply // the loop always answers
	}
}

// reloadPoolsBound bounds SIGHUP's reload of the pools beyond the pool's
// start_timeout: health checks and warm-up.
const reloadPoolsBound = time.Minute

// reloadPoolsOnHUP reloads the active release's pool in the background,
// as `fpmux reload-pools` would, once SIGHUP put cfg in force. wg counts it
// until it is over.
func reloadPoolsOnHUP(sup *supervisor.Supervisor, cfg *config.Config, wg *sync.WaitGroup, log *slog.Logger) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.PHPFPM.StartTimeout)+reloadPoolsBound)
		defer cancel()
		if _, err := sup.ReloadPools(ctx); err != nil {
			log.Error("reload_pools: the pools were not reloaded after SIGHUP", "err", err)
		}
	}()
}

func clientReloadPools(args []string, stdout, stderr io.Writer) error {
	data, err := clientPostWaiting("reload-pools", "/v1/reload-pools", "how long to wait for the fresh pool to take over", args, stdout, stderr)
	if err != nil {
		return err
	}
	r, ok := clientDecodeRelease(data)
	if !ok {
		fmt.Fprintln(stdout, "pools reloaded")
		return nil
	}
	detail := ""
	if r.ReadyMS != nil {
		detail = fmt.Sprintf(", ready in %dms", *r.ReadyMS)
	}
	detail += clientHealthSummary(r)
	fmt.Fprintf(stdout, "release %s %s on a fresh pool (generation %d%s)\n", r.ID, r.State, r.Generation, detail)
	return nil
}
