// Package system tests flusso as an operator runs it: real processes of the
// built binary against real Postgres, NATS and OpenSearch, killed and
// restarted, with what lands in OpenSearch compared to a fresh build.
package system

import (
	"testing"

	"github.com/flusso/flusso/internal/harness"
	"github.com/flusso/flusso/internal/testenv"
)

// deployment is one flusso deployment under test with a broker of its own,
// a real nats-server its processes share.
type deployment struct {
	*harness.Deployment
	nats *testenv.NATSProcess
}

func newDeployment(t *testing.T, ddl string) *deployment {
	t.Helper()
	return &deployment{Deployment: harness.NewDeployment(t, ddl), nats: testenv.StartNATSProcess(t)}
}

// writeConfig writes flusso.toml and the schemas (name → body) into the
// deployment's directory. The sink retries long enough to ride out an
// OpenSearch restart.
func (d *deployment) writeConfig(schemas map[string]string, onError string) {
	d.T.Helper()
	c := harness.Config{OnError: onError, MaxRetries: 8}
	for name, body := range schemas {
		c.Indexes = append(c.Indexes, harness.Index{Name: name, Schema: body})
	}
	d.WriteConfig(c)
}

// proc prepares a flusso process of this deployment on the external broker.
func (d *deployment) proc(name string, args ...string) *harness.Proc {
	d.T.Helper()
	args = append([]string{"--config", "flusso.toml", "--nats-url", d.nats.URL, "--lock", name + ".lock", "--slot", d.Slot()}, args...)
	return harness.NewProc(d.T, name, d.Dir, args...)
}
