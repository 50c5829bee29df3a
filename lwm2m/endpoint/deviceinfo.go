package endpoint

import (
	"context"

	"github.com/deviceserver/deviceserver/lwm2m"
)

// SetDeviceInfo records what was read from the client's object 3 on its
// current registration (kept across Updates, in memory and in the store)
// and returns the registration with it. Stub: replaced by the real one.
func (s *Server) SetDeviceInfo(ctx context.Context, clientID string, info lwm2m.DeviceInfo) (lwm2m.Registration, error) {
	_, st, err := s.current(clientID)
	if err != nil {
		return lwm2m.Registration{}, err
	}
	reg := st.reg
	reg.Device = &info
	return reg, nil
}
