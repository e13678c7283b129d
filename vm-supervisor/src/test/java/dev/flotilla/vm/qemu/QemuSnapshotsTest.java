package dev.flotilla.vm.qemu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A snapshot's metadata and the command line its restore runs, without QEMU. */
class QemuSnapshotsTest {

  @TempDir Path dir;

  private static QemuSnapshots.Meta meta(List<String> argv) {
    return new QemuSnapshots.Meta("sbx-1", 3, 1, 256, "tcg", argv, "tpl-x", 1000, 2000, 100, 42);
  }

  private static final List<String> CLONE = List.of("qemu-system-x86_64", "-name", "flotilla-sbx-1-3", "-M",
      "microvm,pit=on,memory-backend=mem", "-smp", "1", "-m", "256M", "-append", "console=ttyS0 quiet flotilla.template=1",
      "-object", "memory-backend-file,id=mem,size=256M,mem-path=/vm/memory,share=off", "-incoming", "defer");

  @Test
  void aClonesRestoreMapsPlainRamUnderTheSameIdAndWaitsForItsState() {
    List<String> argv = QemuSnapshots.restoreArgv(meta(CLONE), "flotilla-fork-1");
    assertEquals(List.of("qemu-system-x86_64", "-name", "flotilla-fork-1", "-M", "microvm,pit=on,memory-backend=mem", "-smp", "1",
        "-m", "256M", "-append", "console=ttyS0 quiet flotilla.template=1", "-object", "memory-backend-ram,id=mem,size=256M",
        "-incoming", "defer"), argv);
  }

  @Test
  void aColdBootsRestoreKeepsItsDefaultRam() {
    List<String> cold = List.of("qemu-system-x86_64", "-name", "flotilla-sbx-1-3", "-M", "microvm,pit=on", "-m", "256M");
    List<String> argv = QemuSnapshots.restoreArgv(meta(cold), "flotilla-sbx-1-4");
    assertEquals(List.of("qemu-system-x86_64", "-name", "flotilla-sbx-1-4", "-M", "microvm,pit=on", "-m", "256M", "-incoming", "defer"),
        argv);
    assertEquals(1, Collections.frequency(argv, "-incoming"));
  }

  @Test
  void aSnapshotRestoresOnlyWithTheNetworkItsGuestWasTakenWith() {
    String here = "10.0.2.15/24,10.0.2.2,10.0.2.3";
    List<String> egress = List.of("qemu-system-x86_64", "-append", "console=ttyS0 " + QemuNetwork.KERNEL_ARG + here + " flotilla.root=disk",
        "-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path=/run/passt.sock", "-device", "virtio-net-device,netdev=net0");
    List<String> none = List.of("qemu-system-x86_64", "-append", "console=ttyS0 flotilla.root=disk");
    assertNull(QemuSnapshots.networkRefusal(meta(egress), here), "egress, restored with egress on a node like its own");
    assertNull(QemuSnapshots.networkRefusal(meta(none), null), "none, restored with none");
    assertTrue(QemuSnapshots.networkRefusal(meta(egress), null).contains("restores only with it"));
    assertTrue(QemuSnapshots.networkRefusal(meta(none), here).contains("taken without a network"));
    String other = QemuSnapshots.networkRefusal(meta(egress), "10.0.2.15/24,10.0.2.2,10.0.9.9");
    assertTrue(other.contains(here) && other.contains("10.0.9.9"), other);
  }

  @Test
  void metadataRoundTripsNodeOnlyAndRefusesWhatOthersCouldWrite() throws Exception {
    QemuSnapshots.Meta m = meta(CLONE);
    QemuSnapshots.write(dir, m);
    Path file = dir.resolve(QemuSnapshots.META);
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(file)));
    assertEquals(m, QemuSnapshots.read(dir), "the argv with its spaces, exactly");
    Files.setPosixFilePermissions(file, PosixFilePermissions.fromString("rw-rw-rw-"));
    assertThrows(IOException.class, () -> QemuSnapshots.read(dir));
  }
}
