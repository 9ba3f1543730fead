package opensearch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/flusso/flusso/pkg/flow"
	"github.com/flusso/flusso/pkg/sink"
)

// maxConflicts bounds how often one call re-reads flusso_meta after another
// process changed it under it.
const maxConflicts = 10

// Ensure creates what the index needs and returns its state; see the
// package documentation for the naming and the lifecycle.
func (s *Sink) Ensure(ctx context.Context, ix flow.Index) (sink.State, error) {
	if ix.Name == "" || ix.Hash == "" || ix.Schema == nil {
		return sink.State{}, fmt.Errorf("ensure index %q: name, hash and schema are required", ix.Name)
	}
	if err := s.ensureMetaIndex(ctx); err != nil {
		return sink.State{}, fmt.Errorf("ensure index %s: %w", ix.Name, err)
	}
	o := owned{ix: ix, hashAlias: s.hashAlias(ix.Name, ix.Hash)}
	// The hash alias name must be free for an alias.
	if concrete, err := s.indexExists(ctx, o.hashAlias); err != nil {
		return sink.State{}, fmt.Errorf("ensure index %s: %w", ix.Name, err)
	} else if concrete {
		return sink.State{}, fmt.Errorf("ensure index %s: %s is a concrete index, the name is needed for an alias; reindex it into %s and delete it",
			ix.Name, o.hashAlias, generationName(o.hashAlias, 1))
	}

	var made []string // generations this call created
	for range maxConflicts {
		m, v, err := s.readMeta(ctx, ix.Name)
		if err != nil {
			return sink.State{}, fmt.Errorf("ensure index %s: %w", ix.Name, err)
		}
		var st sink.State
		if v.found && m.Hash == ix.Hash && m.Generation > 0 {
			st, err = s.resume(ctx, o, m, v)
		} else {
			st, err = s.start(ctx, o, m, v, &made)
		}
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return sink.State{}, fmt.Errorf("ensure index %s: %w", ix.Name, err)
		}
		s.dropUnused(ctx, made, generationName(o.hashAlias, st.Generation), generationName(o.hashAlias, st.Next))
		s.mu.Lock()
		s.owned[ix.Name] = o
		s.mu.Unlock()
		return st, nil
	}
	return sink.State{}, fmt.Errorf("ensure index %s: %w %d times in a row", ix.Name, errConflict, maxConflicts)
}

// resume takes up the generations the meta document names for this hash,
// recreating any that was deleted (empty, hence unseeded).
func (s *Sink) resume(ctx context.Context, o owned, m metaDoc, v metaVersion) (sink.State, error) {
	current := generationName(o.hashAlias, m.Generation)
	changed := false
	created, err := s.createGeneration(ctx, o.ix, current)
	if err != nil {
		return sink.State{}, err
	}
	if created && m.Seeded {
		s.log.Warn("the seeded generation no longer exists; recreated it empty, it will be reseeded", "index", current)
		m.Seeded, m.SeededAt, changed = false, nil, true
	}
	if m.Next != 0 {
		next := generationName(o.hashAlias, m.Next)
		created, err := s.createGeneration(ctx, o.ix, next)
		if err != nil {
			return sink.State{}, err
		}
		if created {
			s.log.Warn("the generation being reindexed no longer exists; recreated it empty", "index", next)
		}
	}
	if changed {
		if err := s.writeMeta(ctx, m, v); err != nil {
			return sink.State{}, err
		}
	}
	if err := s.pointAlias(ctx, o.hashAlias, current); err != nil {
		return sink.State{}, err
	}
	s.pointConvenience(ctx, o.ix.Name, current, !m.Seeded)
	docs, err := s.count(ctx, current)
	if err != nil {
		return sink.State{}, err
	}
	return sink.State{Seeded: m.Seeded, Generation: m.Generation, Next: m.Next, Docs: docs}, nil
}

// start begins a hash that has no current generation: the first run of the
// index, a schema change, or a return to an earlier schema whose indexes
// missed every change since.
func (s *Sink) start(ctx context.Context, o owned, old metaDoc, v metaVersion, made *[]string) (sink.State, error) {
	existing, err := s.generations(ctx, o.hashAlias)
	if err != nil {
		return sink.State{}, err
	}
	gen := uint32(1)
	if len(existing) > 0 {
		gen = existing[len(existing)-1] + 1
	}
	name := generationName(o.hashAlias, gen)
	created, err := s.createGeneration(ctx, o.ix, name)
	if err != nil {
		return sink.State{}, err
	}
	if created {
		*made = append(*made, name)
	}
	m := metaDoc{Index: o.ix.Name, Hash: o.ix.Hash, Generation: gen, CreatedAt: time.Now().UTC()}
	if err := s.writeMeta(ctx, m, v); err != nil {
		return sink.State{}, err
	}
	if old.Hash != "" {
		s.log.Info("schema changed: building a new index; the previous one stays, unmaintained, until you delete it",
			"index", o.ix.Name, "hash", o.ix.Hash, "previous", s.hashAlias(o.ix.Name, old.Hash))
	}
	// Anything the hash alias held is an earlier, stale generation of this
	// hash; MarkSeeded deletes it.
	if err := s.pointAlias(ctx, o.hashAlias, name); err != nil {
		return sink.State{}, err
	}
	s.pointConvenience(ctx, o.ix.Name, name, true)
	return sink.State{Generation: gen}, nil
}

// dropUnused deletes the generations a call created that, after another
// process won the race to record its own, nothing refers to.
func (s *Sink) dropUnused(ctx context.Context, made []string, keep ...string) {
	for _, name := range made {
		if slices.Contains(keep, name) {
			continue
		}
		if err := s.deleteIndex(ctx, name); err != nil {
			s.log.Warn("could not delete an unused generation", "index", name, "err", err)
		}
	}
}

// lookup returns what Ensure learned about an index.
func (s *Sink) lookup(index string) (owned, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owned[index]
	if !ok {
		return owned{}, fmt.Errorf("index %s was not ensured by sink %s", index, s.cfg.Name)
	}
	return o, nil
}

// State reads an ensured index's meta document and document count; it
// moves no alias and creates nothing. Status pages ask it, so it answers
// within Timeout rather than wait out an outage as writes do.
func (s *Sink) State(ctx context.Context, index string) (sink.State, error) {
	o, err := s.lookup(index)
	if err != nil {
		return sink.State{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	m, _, err := s.readOwnMeta(ctx, o)
	if err != nil {
		return sink.State{}, err
	}
	docs, err := s.count(ctx, o.hashAlias)
	if err != nil {
		return sink.State{}, err
	}
	return sink.State{Seeded: m.Seeded, Generation: m.Generation, Next: m.Next, Docs: docs}, nil
}

// readOwnMeta reads the meta document of an index and checks it still
// describes this process's schema.
func (s *Sink) readOwnMeta(ctx context.Context, o owned) (metaDoc, metaVersion, error) {
	m, v, err := s.readMeta(ctx, o.ix.Name)
	if err != nil {
		return m, v, err
	}
	if !v.found {
		return m, v, fmt.Errorf("%s has no document in %s", o.ix.Name, s.metaIndex())
	}
	if m.Hash != o.ix.Hash {
		return m, v, fmt.Errorf("%s now has schema hash %s (this process has %s): another deployment took it over", o.ix.Name, m.Hash, o.ix.Hash)
	}
	return m, v, nil
}

// MarkSeeded makes generation gen the one readers see: steady-state refresh,
// both aliases moved onto it in one atomic call, the seeded flag recorded,
// and the older generations of the hash deleted.
func (s *Sink) MarkSeeded(ctx context.Context, index string, gen uint32) error {
	o, err := s.lookup(index)
	if err != nil {
		return err
	}
	target := generationName(o.hashAlias, gen)
	for range maxConflicts {
		m, v, err := s.readOwnMeta(ctx, o)
		if err != nil {
			return fmt.Errorf("mark %s seeded: %w", index, err)
		}
		if gen != m.Generation && gen != m.Next {
			return fmt.Errorf("mark %s seeded: generation %d is neither the current (%d) nor the next (%d)", index, gen, m.Generation, m.Next)
		}
		if err := s.prepareSeeded(ctx, target); err != nil {
			return fmt.Errorf("mark %s seeded: %w", index, err)
		}
		// Aliases first: until the meta document says otherwise, writers
		// still send current-generation writes through the hash alias and
		// next-generation ones to gen, so from here on both reach gen.
		if err := s.swapAliases(ctx, o, target); err != nil {
			return fmt.Errorf("mark %s seeded: %w", index, err)
		}
		if !m.Seeded || gen == m.Next {
			now := time.Now().UTC()
			if gen == m.Next {
				m.Generation, m.Next = gen, 0
			}
			m.Seeded, m.SeededAt = true, &now
			err := s.writeMeta(ctx, m, v)
			if errors.Is(err, errConflict) {
				continue
			}
			if err != nil {
				return fmt.Errorf("mark %s seeded: %w", index, err)
			}
		}
		s.log.Info("index seeded", "index", index, "generation", target)
		return s.retireBefore(ctx, o.hashAlias, gen)
	}
	return fmt.Errorf("mark %s seeded: %w %d times in a row", index, errConflict, maxConflicts)
}

// prepareSeeded hands a generation its steady-state refresh interval and
// makes its content searchable.
func (s *Sink) prepareSeeded(ctx context.Context, target string) error {
	body, err := json.Marshal(map[string]any{"index": map[string]any{"refresh_interval": s.cfg.RefreshInterval}})
	if err != nil {
		return err
	}
	if _, err := s.callOK(ctx, http.MethodPut, request{path: "/" + url.PathEscape(target) + "/_settings", body: body}); err != nil {
		return fmt.Errorf("set refresh_interval of %s: %w", target, err)
	}
	if _, err := s.callOK(ctx, http.MethodPost, request{path: "/" + url.PathEscape(target) + "/_refresh"}); err != nil {
		return fmt.Errorf("refresh %s: %w", target, err)
	}
	return nil
}

// swapAliases moves the hash alias and the convenience alias onto target in
// one _aliases call. Should the convenience alias make it fail (a concrete
// index with its name, say), the hash alias is moved alone and the failure
// logged.
func (s *Sink) swapAliases(ctx context.Context, o owned, target string) error {
	hashHolders, err := s.aliasHolders(ctx, o.hashAlias)
	if err != nil {
		return err
	}
	hashActions := aliasActions(o.hashAlias, target, hashHolders)
	convenience := s.convenienceAlias(o.ix.Name)
	convHolders, convErr := s.aliasHolders(ctx, convenience)
	if convErr == nil {
		actions := append(slices.Clone(hashActions), aliasActions(convenience, target, convHolders)...)
		if convErr = s.updateAliases(ctx, actions); convErr == nil {
			return nil
		}
	}
	s.log.Warn("could not move the convenience alias; nothing depends on it", "alias", convenience, "index", target, "err", convErr)
	return s.updateAliases(ctx, hashActions)
}

// retireBefore deletes the generations of a hash older than gen. Newer ones
// are left: one may be a reindex another process just began.
func (s *Sink) retireBefore(ctx context.Context, hashAlias string, gen uint32) error {
	existing, err := s.generations(ctx, hashAlias)
	if err != nil {
		return err
	}
	for _, g := range existing {
		if g < gen {
			if err := s.deleteIndex(ctx, generationName(hashAlias, g)); err != nil {
				return err
			}
		}
	}
	return nil
}

// BeginReindex creates the next generation and records it in flusso_meta,
// where every writer's next Write finds it. A reindex already under way is
// returned as is.
func (s *Sink) BeginReindex(ctx context.Context, index string) (uint32, error) {
	o, err := s.lookup(index)
	if err != nil {
		return 0, err
	}
	var made []string // generations this call created
	for range maxConflicts {
		m, v, err := s.readOwnMeta(ctx, o)
		if err != nil {
			return 0, fmt.Errorf("reindex %s: %w", index, err)
		}
		if m.Next != 0 {
			s.dropUnused(ctx, made, generationName(o.hashAlias, m.Next))
			return m.Next, nil
		}
		if !m.Seeded {
			return 0, fmt.Errorf("reindex %s: generation %d is not seeded yet, its backfill is still running", index, m.Generation)
		}
		existing, err := s.generations(ctx, o.hashAlias)
		if err != nil {
			return 0, fmt.Errorf("reindex %s: %w", index, err)
		}
		next := m.Generation + 1
		if len(existing) > 0 && existing[len(existing)-1] >= next {
			next = existing[len(existing)-1] + 1
		}
		// Created before it is recorded: a writer sending to a recorded
		// generation must never find it missing (a bulk write would create
		// it with a guessed mapping).
		name := generationName(o.hashAlias, next)
		created, err := s.createGeneration(ctx, o.ix, name)
		if err != nil {
			return 0, fmt.Errorf("reindex %s: %w", index, err)
		}
		if created {
			made = append(made, name)
		}
		m.Next = next
		err = s.writeMeta(ctx, m, v)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reindex %s: %w", index, err)
		}
		s.dropUnused(ctx, made, name)
		s.log.Info("reindex begun", "index", index, "generation", name)
		return next, nil
	}
	return 0, fmt.Errorf("reindex %s: %w %d times in a row", index, errConflict, maxConflicts)
}

// liveTargets are the names of the live generations of an index: the hash
// alias (current) and the next generation during a reindex.
func (s *Sink) liveTargets(ctx context.Context, o owned) ([]string, error) {
	targets := []string{o.hashAlias}
	m, v, err := s.readMeta(ctx, o.ix.Name)
	if err != nil {
		return nil, err
	}
	if v.found && m.Hash == o.ix.Hash && m.Next != 0 {
		targets = append(targets, generationName(o.hashAlias, m.Next))
	}
	return targets, nil
}

// Refresh makes everything written so far searchable in every generation of
// the indexes this sink owns.
func (s *Sink) Refresh(ctx context.Context) error {
	s.mu.Lock()
	patterns := make([]string, 0, len(s.owned))
	for _, o := range s.owned {
		patterns = append(patterns, o.hashAlias+"_*")
	}
	s.mu.Unlock()
	if len(patterns) == 0 {
		return nil
	}
	slices.Sort(patterns)
	_, err := s.callOK(ctx, http.MethodPost, request{
		path:  "/" + joinNames(patterns) + "/_refresh",
		query: url.Values{"allow_no_indices": {"true"}},
	})
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	return nil
}

// Count is the number of searchable documents in the current generation of
// an index.
func (s *Sink) Count(ctx context.Context, index string) (int64, error) {
	o, err := s.lookup(index)
	if err != nil {
		return 0, err
	}
	return s.count(ctx, o.hashAlias)
}
