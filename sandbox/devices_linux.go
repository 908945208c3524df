package sandbox

import (
	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
)

// The cgroups module's own device manager (cgroups/devices) pulls in
// github.com/cilium/ebpf for cgroup v2, which go.mod does not carry. On
// cgroup v1 the device allow list is two plain files, so this package
// registers a minimal writer: deny everything, then allow each rule. On
// cgroup v2 no device rules are set (see config); the job still has only the
// four device nodes bind-mounted into its /dev and no CAP_MKNOD.
func init() {
	if cgroups.DevicesSetV1 == nil {
		cgroups.DevicesSetV1 = setDevicesV1
	}
}

func setDevicesV1(path string, r *cgroups.Resources) error {
	if r.SkipDevices || len(r.Devices) == 0 {
		return nil
	}
	deny := devices.Rule{Type: devices.WildcardDevice, Major: devices.Wildcard, Minor: devices.Wildcard, Permissions: "rwm"}
	if err := cgroups.WriteFile(path, "devices.deny", deny.CgroupString()); err != nil {
		return err
	}
	for _, rule := range r.Devices {
		if !rule.Allow {
			continue
		}
		if err := cgroups.WriteFile(path, "devices.allow", rule.CgroupString()); err != nil {
			return err
		}
	}
	return nil
}
