package harness

import (
	"encoding/json"
	"os"
)

// PodSubnet is where the cluster's CNI plugin (cmd/podfim-cni) takes the
// /32 address of each pod that is not hostNetwork: TEST-NET-3 (RFC 5737),
// never routed, and not the machine's own (192.0.2.0/24).
const PodSubnet = "203.0.113.0/24"

// cniConflist is the only network of containerd's CRI (max_conf_num = 1):
// podfim-cni gives a pod's namespace lo and an eth0 with a pod IP and no
// route, so a pod without hostNetwork starts, and cannot send anywhere but
// to itself. containerd adds its own loopback network before it.
func (c *Config) cniConflist() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "podfim",
		"plugins": []map[string]any{{
			"type":    "podfim-cni",
			"subnet":  PodSubnet,
			"dataDir": c.path("cni", "leases"),
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	return append(b, '\n'), err
}

// writeCNI writes the network configuration and the plugin directory
// containerd looks in: Debian's loopback (for containerd's own loopback
// network) and podfim-cni from the build cache, linked. Nothing is put in
// the machine's /usr/lib/cni.
func (c *Config) writeCNI() error {
	conf, err := c.cniConflist()
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.path("cni", "10-podfim.conflist"), conf, 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(c.path("cni", "bin"), 0o755); err != nil {
		return err
	}
	for name, target := range map[string]string{"loopback": "/usr/lib/cni/loopback", "podfim-cni": c.bin("podfim-cni")} {
		link := c.path("cni", "bin", name)
		os.Remove(link)
		if err := os.Symlink(target, link); err != nil {
			return err
		}
	}
	return nil
}
