package dev.flotilla.agent.guest.rebirth;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;
import org.junit.jupiter.api.Test;

/**
 * The real RNDADDENTROPY and RNDRESEEDCRNG ioctls, on the test host's kernel. Harmless: they only
 * add (and credit) entropy and reseed the CRNG now. They need CAP_SYS_ADMIN, so the test skips
 * without it; the clock and hostname calls are never made on the test host.
 */
class RebirthKernelRngTest {

  @Test
  void theSeedGoesIntoTheKernelPool() throws Exception {
    assumeTrue(Files.isReadable(Path.of("/dev/urandom")) && System.getProperty("os.name").equals("Linux"), "Linux only");
    assumeTrue(capSysAdmin(), "needs CAP_SYS_ADMIN (run as root) to feed the kernel's entropy pool");
    byte[] seed = new byte[32];
    new SecureRandom().nextBytes(seed);
    assertDoesNotThrow(() -> new LinuxCloneSystem().reseedKernelRng(seed));
  }

  @Test
  void theIoctlNumbersAreLinuxs() {
    // _IOW('R', 0x03, int[2]) and _IO('R', 0x07), from include/uapi/linux/random.h
    assertEquals((1L << 30) | (8L << 16) | ('R' << 8) | 0x03, LinuxCloneSystem.RNDADDENTROPY);
    assertEquals(('R' << 8) | 0x07, LinuxCloneSystem.RNDRESEEDCRNG);
  }

  /** CAP_SYS_ADMIN (bit 21) in the effective set. */
  private static boolean capSysAdmin() throws Exception {
    for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (line.startsWith("CapEff:")) return (Long.parseUnsignedLong(line.substring(7).trim(), 16) & (1L << 21)) != 0;
    }
    return false;
  }
}
