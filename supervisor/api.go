// This file owns the admin API: HTTP/1.1 + JSON on the admin listener, as
// the contract lists it, plus GET /v1/releases/{id} and POST /v1/rollback.

package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxAdminBody bounds a request body on the admin API.
const maxAdminBody = 64 << 10

// Handler returns the admin API.
func (s *Supervisor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/releases", s.handleList)
	mux.HandleFunc("POST /v1/releases", s.handleDeploy)
	mux.HandleFunc("GET /v1/releases/{id}", s.handleGet)
	mux.HandleFunc("POST /v1/releases/{id}/activate", s.handleActivate)
	mux.HandleFunc("DELETE /v1/releases/{id}", s.handleRetire)
	mux.HandleFunc("POST /v1/rollback", s.handleRollback)
	mux.HandleFunc("GET /v1/healthz", s.handleHealthz)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(404, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var e *Error
	if errors.As(err, &e) {
		status = e.Status
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func (s *Supervisor) handleList(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, s.List(r.Context()))
}

func (s *Supervisor) handleGet(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, rel)
}

// deployBody is POST /v1/releases.
type deployBody struct {
	ID       string `json:"id"`
	Root     string `json:"root"`
	Activate *bool  `json:"activate"` // default true
	Timeout  string `json:"timeout"`  // default php_fpm.start_timeout
}

func (s *Supervisor) handleDeploy(w http.ResponseWriter, r *http.Request) {
	var body deployBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, errorf(400, "request body: %v; want {\"id\": ..., \"root\": ..., \"activate\": true}", err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, errorf(400, "request body: trailing data after the JSON object"))
		return
	}
	if body.ID == "" || body.Root == "" {
		writeError(w, errorf(400, "request body: id and root are required"))
		return
	}
	ctx := r.Context()
	if body.Timeout != "" {
		d, err := time.ParseDuration(body.Timeout)
		if err != nil || d <= 0 {
			writeError(w, errorf(400, "request body: timeout %q is not a positive duration like 30s", body.Timeout))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	activate := body.Activate == nil || *body.Activate
	rel, err := s.Deploy(ctx, DeployRequest{ID: body.ID, Root: body.Root, Activate: activate})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 201, rel)
}

func (s *Supervisor) handleActivate(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Activate(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, rel)
}

func (s *Supervisor) handleRetire(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Retire(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 202, rel)
}

func (s *Supervisor) handleRollback(w http.ResponseWriter, r *http.Request) {
	rel, err := s.Rollback(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, 200, rel)
}

func (s *Supervisor) handleHealthz(w http.ResponseWriter, r *http.Request) {
	if id := s.ActiveID(); id != "" {
		writeJSON(w, 200, map[string]string{"active": id})
		return
	}
	writeJSON(w, 503, map[string]string{"error": fmt.Sprint("no active release")})
}
