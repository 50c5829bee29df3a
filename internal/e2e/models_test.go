package e2e

import (
	"testing"

	"github.com/deviceserver/deviceserver/internal/deviceserver"
	"github.com/deviceserver/deviceserver/internal/testserver"
)

// TestModelsDir loads the OMA registry folder at start: its objects are
// definitions every organisation can read.
func TestModelsDir(t *testing.T) {
	srv := testserver.Start(t, func(c *deviceserver.Config) { c.ModelsDir = "../../../shared/oma-models/registry" })
	api := testserver.Client{T: t, Token: srv.Token(t)}
	defs := api.Get(srv.URL + "/objecttypes/definitions?pageSize=1000").Body
	total := defs["PageInfo"].(map[string]any)["TotalCount"].(float64)
	if total < 250 {
		t.Errorf("%v definitions with the registry loaded, want the registry's ~280", total)
	}
	// 10241 (an OMA registry object that is not embedded) is now defined.
	if name := api.Get(srv.URL + "/objecttypes/definitions/10241").Body["Name"]; name == "" || name == nil {
		t.Errorf("definition 10241 has no name")
	}
}
