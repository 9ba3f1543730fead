package opensearch

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/mapping"
)

// indexBody is the creation body of a generation of ix.
func (s *Sink) indexBody(ix flow.Index) ([]byte, error) {
	opts := mapping.Options{TextAnalysis: s.cfg.TextAnalysis, AutoSubfields: s.cfg.AutoSubfields}
	settings := mapping.Settings(ix.Schema, opts, s.cfg.Shards, s.cfg.Replicas)
	settings["index"].(map[string]any)["gc_deletes"] = gcDeletes
	return json.Marshal(map[string]any{
		"settings": settings,
		"mappings": mapping.For(ix.Schema, opts),
	})
}

// createIndex creates an index unless it exists; created says which. It
// returns once the primary shards are active, so reads of the index work.
func (s *Sink) createIndex(ctx context.Context, name string, body []byte) (created bool, err error) {
	resp, err := s.call(ctx, http.MethodPut, request{path: "/" + url.PathEscape(name), body: body})
	if err != nil {
		return false, err
	}
	if resp.ok() {
		return true, nil
	}
	if resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "resource_already_exists_exception") {
		return false, resp.errorOf()
	}
	// Another process may have created it an instant ago; its creation
	// waited for the primaries, this one did not.
	_, err = s.callOK(ctx, http.MethodGet, request{
		path:  "/_cluster/health/" + url.PathEscape(name),
		query: url.Values{"wait_for_status": {"yellow"}, "timeout": {fmt.Sprintf("%dms", s.cfg.Timeout.Milliseconds()/2)}},
	})
	if err != nil {
		return false, fmt.Errorf("wait for %s: %w", name, err)
	}
	return false, nil
}

// createGeneration creates a generation of ix with its mapping.
func (s *Sink) createGeneration(ctx context.Context, ix flow.Index, name string) (bool, error) {
	body, err := s.indexBody(ix)
	if err != nil {
		return false, err
	}
	created, err := s.createIndex(ctx, name, body)
	if err != nil {
		return false, fmt.Errorf("create %s: %w", name, err)
	}
	if created {
		s.log.Info("created index", "index", name)
	}
	return created, nil
}

// concreteIndexes lists the concrete (non-alias) indexes matching a
// pattern, hidden ones included.
func (s *Sink) concreteIndexes(ctx context.Context, pattern string) ([]string, error) {
	resp, err := s.callOK(ctx, http.MethodGet, request{
		path:  "/_cat/indices/" + url.PathEscape(pattern),
		query: url.Values{"format": {"json"}, "h": {"index"}, "expand_wildcards": {"all"}},
	}, http.StatusNotFound)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", pattern, err)
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	var rows []struct {
		Index string `json:"index"`
	}
	if err := json.Unmarshal(resp.body, &rows); err != nil {
		return nil, fmt.Errorf("decode index list: %w", err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Index
	}
	return out, nil
}

func (s *Sink) indexExists(ctx context.Context, name string) (bool, error) {
	found, err := s.concreteIndexes(ctx, name)
	if err != nil {
		return false, err
	}
	return slices.Contains(found, name), nil
}

// generations lists the generation numbers existing behind a hash alias,
// ascending.
func (s *Sink) generations(ctx context.Context, hashAlias string) ([]uint32, error) {
	names, err := s.concreteIndexes(ctx, hashAlias+"_*")
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, n := range names {
		if g, ok := parseGeneration(hashAlias, n); ok {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}

// parseGeneration is the inverse of generationName.
func parseGeneration(hashAlias, index string) (uint32, bool) {
	rest, ok := strings.CutPrefix(index, hashAlias+"_")
	if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" {
		return 0, false
	}
	g, err := strconv.ParseUint(rest, 10, 32)
	if err != nil || g == 0 {
		return 0, false
	}
	return uint32(g), true
}

// aliasHolders lists the indexes an alias points at.
func (s *Sink) aliasHolders(ctx context.Context, alias string) ([]string, error) {
	resp, err := s.callOK(ctx, http.MethodGet, request{path: "/_alias/" + url.PathEscape(alias)}, http.StatusNotFound)
	if err != nil {
		return nil, fmt.Errorf("look up alias %s: %w", alias, err)
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return nil, fmt.Errorf("decode alias %s: %w", alias, err)
	}
	out := make([]string, 0, len(got))
	for index := range got {
		out = append(out, index)
	}
	slices.Sort(out)
	return out, nil
}

// aliasActions are the _aliases actions moving alias onto target alone, nil
// when it is there already.
func aliasActions(alias, target string, holders []string) []any {
	if len(holders) == 1 && holders[0] == target {
		return nil
	}
	var actions []any
	for _, h := range holders {
		if h != target {
			actions = append(actions, map[string]any{"remove": map[string]any{"index": h, "alias": alias}})
		}
	}
	return append(actions, map[string]any{"add": map[string]any{"index": target, "alias": alias}})
}

// updateAliases applies alias actions atomically.
func (s *Sink) updateAliases(ctx context.Context, actions []any) error {
	if len(actions) == 0 {
		return nil
	}
	body, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		return err
	}
	if _, err := s.callOK(ctx, http.MethodPost, request{path: "/_aliases", body: body}); err != nil {
		return fmt.Errorf("update aliases: %w", err)
	}
	return nil
}

// pointAlias moves alias onto target alone.
func (s *Sink) pointAlias(ctx context.Context, alias, target string) error {
	holders, err := s.aliasHolders(ctx, alias)
	if err != nil {
		return err
	}
	return s.updateAliases(ctx, aliasActions(alias, target, holders))
}

// pointConvenience points the convenience alias at target, only if nothing
// holds it yet when onlyIfFree. A failure is logged, never returned.
func (s *Sink) pointConvenience(ctx context.Context, logical, target string, onlyIfFree bool) {
	alias := s.convenienceAlias(logical)
	holders, err := s.aliasHolders(ctx, alias)
	if err == nil && (!onlyIfFree || len(holders) == 0) {
		err = s.updateAliases(ctx, aliasActions(alias, target, holders))
	}
	if err != nil {
		s.log.Warn("could not point the convenience alias; nothing depends on it", "alias", alias, "index", target, "err", err)
	}
}

func (s *Sink) deleteIndex(ctx context.Context, name string) error {
	if _, err := s.callOK(ctx, http.MethodDelete, request{path: "/" + url.PathEscape(name)}, http.StatusNotFound); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	s.log.Info("deleted index", "index", name)
	return nil
}

// count is the number of documents searchable in an index or alias.
func (s *Sink) count(ctx context.Context, target string) (int64, error) {
	resp, err := s.callOK(ctx, http.MethodGet, request{path: "/" + url.PathEscape(target) + "/_count"})
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", target, err)
	}
	var got struct {
		Count int64 `json:"count"`
	}
	if err := json.Unmarshal(resp.body, &got); err != nil {
		return 0, fmt.Errorf("decode count of %s: %w", target, err)
	}
	return got.Count, nil
}
