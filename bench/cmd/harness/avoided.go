package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// avoided is the work a flusso process skipped: changes its capture
// dropped as reading no indexed column, and sink writes it left out
// because the document did not change.
type avoided struct {
	ChangesSkipped uint64 `json:"changes_skipped"`
	WritesSkipped  uint64 `json:"writes_skipped"`
	// WritesReported is false when the build under test reports no skipped
	// writes (WritesSkipped is then 0 for want of a figure).
	WritesReported bool `json:"writes_reported"`
}

func (a *avoided) minus(b *avoided) *avoided {
	return &avoided{ChangesSkipped: a.ChangesSkipped - b.ChangesSkipped, WritesSkipped: a.WritesSkipped - b.WritesSkipped,
		WritesReported: a.WritesReported}
}

// writesSkippedMetrics are the Prometheus counters a build may report
// sink writes skipped for unchanged documents under.
var writesSkippedMetrics = []string{"flusso_documents_unchanged_total", "flusso_writes_skipped_total"}

// readAvoided reads a flusso process's counters from its public surface
// (base is e.g. http://127.0.0.1:19464).
func readAvoided(ctx context.Context, base string) (*avoided, error) {
	var st struct {
		ChangesSkipped map[string]uint64 `json:"changes_skipped"`
	}
	if err := getBody(ctx, base+"/status", func(r io.Reader) error { return json.NewDecoder(r).Decode(&st) }); err != nil {
		return nil, err
	}
	a := &avoided{}
	for _, n := range st.ChangesSkipped {
		a.ChangesSkipped += n
	}
	err := getBody(ctx, base+"/metrics", func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			name, _, _ := strings.Cut(line, " ")
			name, _, _ = strings.Cut(name, "{")
			for _, m := range writesSkippedMetrics {
				if name != m {
					continue
				}
				f := strings.Fields(line)
				v, err := strconv.ParseFloat(f[len(f)-1], 64)
				if err == nil {
					a.WritesSkipped += uint64(v)
					a.WritesReported = true
				}
			}
		}
		return sc.Err()
	})
	return a, err
}

func getBody(ctx context.Context, url string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := read(resp.Body); err != nil {
		return fmt.Errorf("reading %s: %w", url, err)
	}
	return nil
}
