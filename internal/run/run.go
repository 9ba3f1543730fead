package run

import (
	"context"
	"errors"
)

// Run runs the pipeline until ctx is cancelled or a stage fails.
func Run(ctx context.Context, opts Options) error {
	return errors.New("run: the pipeline is being assembled; not available yet")
}
