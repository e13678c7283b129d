package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The driver's decisions that need no VM: command line, refusals, QMP's JSON. */
class QemuHypervisorTest {

  @TempDir Path tmp;

  private QemuHypervisor hypervisor() throws Exception {
    Path image = Files.createDirectories(tmp.resolve("image"));
    Files.writeString(image.resolve("vmlinux"), "");
    Files.writeString(image.resolve("initramfs.cpio"), "");
    return new QemuHypervisor(new QemuConfig("qemu-system-x86_64", image, "tcg"));
  }

  @Test
  void commandLineCarriesTheSpecAndTheSockets() throws Exception {
    QemuVm vm = (QemuVm) hypervisor().prepare(new VmSpec("sb-1", 7, 2, 512, 0, tmp.resolve("vm"), Map.of()));
    String cmd = String.join(" ", vm.command());
    assertTrue(cmd.contains("-M microvm,pit=on -accel tcg"), cmd);
    assertTrue(cmd.contains("-smp 2 -m 512M"), cmd);
    assertTrue(cmd.contains("flotilla.sandbox_id=sb-1 flotilla.incarnation=7"), cmd);
    assertTrue(cmd.contains("path=" + tmp.resolve("vm/agent.sock") + ",server=on,wait=off"), cmd);
    assertTrue(cmd.contains("name=flotilla.agent"), cmd);
    assertTrue(cmd.contains("-no-reboot"), cmd);
    if (HostProbe.tscKhz() > 0) assertTrue(cmd.contains("tsc_early_khz=" + HostProbe.tscKhz()), cmd);
    assertEquals("tcg", vm.handle().extra().get("accel"));
    assertEquals(tmp.resolve("vm/qmp.sock").toString(), vm.handle().extra().get("qmpSocket"));
  }

  @Test
  void refusesWhatCannotBoot() throws Exception {
    QemuHypervisor hv = hypervisor();
    VmException small = assertThrows(VmException.class,
        () -> hv.prepare(new VmSpec("a", 1, 1, 128, 0, tmp.resolve("a"), Map.of())));
    assertTrue(small.getMessage().contains("memoryMiB >= 256"), small.getMessage());
    assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a b", 1, 1, 256, 0, tmp.resolve("b"), Map.of())));
    Path deep = tmp.resolve("x".repeat(100));
    VmException longPath = assertThrows(VmException.class, () -> hv.prepare(new VmSpec("a", 1, 1, 256, 0, deep, Map.of())));
    assertTrue(longPath.getMessage().contains("too long for a Unix socket"), longPath.getMessage());
    VmException noImage = assertThrows(VmException.class, () -> new QemuHypervisor(
        new QemuConfig("qemu-system-x86_64", tmp.resolve("none"), "tcg")).prepare(new VmSpec("a", 1, 1, 256, 0, tmp.resolve("c"), Map.of())));
    assertTrue(noImage.getMessage().contains("guest-image/build.sh"), noImage.getMessage());
  }

  @Test
  void jsonRoundTripsQmpMessages() {
    Object v = Json.parse("{\"return\": {\"status\": \"paused\", \"running\": false, \"n\": [1, -2.5e1, null]},"
        + " \"s\": \"a\\\"b\\u00e9\\n\"}");
    Map<?, ?> m = (Map<?, ?>) v;
    assertEquals(Map.of("status", "paused", "running", false, "n", java.util.Arrays.asList(1L, -25.0, null)), m.get("return"));
    assertEquals("a\"b\u00e9\n", m.get("s"));
    assertEquals("{\"x\":[1,true,\"q\\\"\"]}", Json.write(Map.of("x", List.of(1, true, "q\""))));
    assertThrows(IllegalArgumentException.class, () -> Json.parse("{\"a\": }"));
  }
}
