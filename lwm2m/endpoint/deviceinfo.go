package endpoint

import (
	"context"
	"fmt"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// SetDeviceInfo records what was read from the client's object 3 on its
// current registration, in memory and in the store, and returns the
// registration with it. Updates keep it; a new Register (the device
// started afresh, perhaps with new firmware) starts without it.
//
// It changes the registration under the client's lock, like an Update, so
// that it cannot undo a concurrent Update or resurrect a removed client:
// whichever comes second builds on the other's result. It emits no event.
func (s *Server) SetDeviceInfo(ctx context.Context, clientID string, info lwm2m.DeviceInfo) (lwm2m.Registration, error) {
	const op = "set device info"
	c := s.lookup(clientID)
	if c == nil {
		return lwm2m.Registration{}, fmt.Errorf("endpoint: %s %s: %w", op, clientID, lwm2m.ErrClientNotFound)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.state.Load()
	if c.removed || st == nil {
		return lwm2m.Registration{}, fmt.Errorf("endpoint: %s %s: %w", op, clientID, lwm2m.ErrClientNotFound)
	}
	reg := st.reg
	reg.Device = &info // info is this call's copy; nobody else holds it
	if err := s.store.PutRegistration(ctx, reg); err != nil {
		return lwm2m.Registration{}, fmt.Errorf("endpoint: %s %s: store registration: %w", op, clientID, err)
	}
	c.state.Store(&clientState{reg: reg, peer: st.peer})
	return reg, nil
}
