package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.OptionalInt;
import org.junit.jupiter.api.Test;

/** Reading the guest init's exit from the serial console, which is how a QEMU guest says why it ended. */
class QemuConsoleTest {

  @Test
  void initExitCodeFromTheKernelPanic() {
    String lease = "flotilla-guest-agent: lease expired: no renewal from the node for 2.1 s (lease 2 s); ...\n"
        + "[   12.345678] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00004b00\n"
        + "[   12.346000] Kernel Offset: disabled\n";
    assertEquals(OptionalInt.of(75), QemuVm.initExitCode(lease));
    assertEquals(OptionalInt.of(0), QemuVm.initExitCode("Attempted to kill init! exitcode=0x00000000"));
    // killed by a signal (SIGKILL): no exit code
    assertEquals(OptionalInt.empty(), QemuVm.initExitCode("Attempted to kill init! exitcode=0x00000009"));
    assertEquals(OptionalInt.empty(), QemuVm.initExitCode("reboot: Power down\n"));
    // the last panic is the one that ended the guest
    assertEquals(OptionalInt.of(75), QemuVm.initExitCode(
        "Attempted to kill init! exitcode=0x00000100\nAttempted to kill init! exitcode=0x00004b00"));
  }
}
