package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.HypervisorCapabilities;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.ids.IdRangeAllocator;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A host missing one piece of what a hardened sandbox needs: the driver is not offered (no limits,
 * no pause, no adopt, and the reason in its capabilities) and {@code prepare} fails with a message
 * naming what to install or run. There is no fallback: nothing starts, not even half a sandbox.
 */
class DegradedHostTest {
  private TestSandboxes sandboxes;

  @BeforeEach
  void setUp() throws Exception {
    sandboxes = new TestSandboxes();
  }

  @AfterEach
  void tearDown() {
    sandboxes.close();
  }

  @Test
  void noOciRuntime() throws Exception {
    Path missing = sandboxes.stateRoot.resolve("no-such-dir/runc");
    var hv = new ProcessHypervisor(sandboxes.hypervisor.config().withOciRuntime(missing), sandboxes.hypervisor.ids());
    assertNotOfferedAndPrepareRefuses(hv, "no OCI runtime at " + missing, "apt-get install runc");
  }

  @Test
  void noSubordinateIdDelegation() throws Exception {
    var none = new IdRangeAllocator(sandboxes.stateRoot.resolve("no-ids"), List.of(), sandboxes.stateRoot);
    var hv = new ProcessHypervisor(sandboxes.hypervisor.config(), none);
    assertNotOfferedAndPrepareRefuses(hv, "/etc/subuid and /etc/subgid", "scripts/setup-host.sh");
  }

  @Test
  void noSandboxRuntime() throws Exception {
    Path missing = sandboxes.stateRoot.resolve("no-runtime");
    var hv = new ProcessHypervisor(sandboxes.hypervisor.config().withRuntimeDir(missing), sandboxes.hypervisor.ids());
    assertNotOfferedAndPrepareRefuses(hv, "no sandbox runtime at " + missing, "guest-image/build-sandbox-runtime.sh");
  }

  private void assertNotOfferedAndPrepareRefuses(ProcessHypervisor hv, String reason, String fix) throws Exception {
    HypervisorCapabilities caps = hv.capabilities();
    assertTrue(caps.enforcedLimits().isEmpty(), caps.toString());
    assertFalse(caps.pause(), caps.toString());
    assertFalse(caps.adopt(), caps.toString());
    assertTrue(caps.warnings().stream().anyMatch(w -> w.contains(reason)), "capabilities say why (" + reason + "): " + caps.warnings());
    assertEquals(1, caps.warnings().size(), "only the missing piece is reported, the rest of this host is fine: " + caps.warnings());

    VmSpec spec = sandboxes.spec();
    VmException e = assertThrows(VmException.class, () -> hv.prepare(spec));
    assertTrue(e.getMessage().contains(reason), e.getMessage());
    assertTrue(e.getMessage().contains(fix), "the message names what to install or run (" + fix + "): " + e.getMessage());
    assertFalse(Files.exists(spec.stateDir()), "nothing prepared");
    assertTrue(hv.ids().rangeOf(spec.sandboxId()).isEmpty(), "no id range taken");
    assertTrue(sandboxes.containers().isEmpty(), "no container");
    assertTrue(sandboxes.mountsUnderRunRoot().isEmpty(), "nothing mounted: " + sandboxes.mountsUnderRunRoot());
  }
}
