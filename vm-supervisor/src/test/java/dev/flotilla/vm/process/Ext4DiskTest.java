package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The disk copy both drivers' snapshots and restores use. */
class Ext4DiskTest {

  @TempDir Path dir;

  @Test
  void aSparseCopyKeepsItsHoles() throws Exception {
    Path disk = dir.resolve("disk");
    try (RandomAccessFile f = new RandomAccessFile(disk.toFile(), "rw")) {
      f.setLength(64L << 20);
      f.seek(32L << 20);
      f.write("data".getBytes());
    }
    Path copy = dir.resolve("copy");
    Ext4Disk.copySparse(disk, copy);
    assertEquals(64L << 20, Files.size(copy));
    assertTrue(Ext4Disk.allocatedBytes(copy) < 1 << 20, "allocated " + Ext4Disk.allocatedBytes(copy));
    assertThrows(IOException.class, () -> Ext4Disk.copySparse(disk, copy), "never over an existing file");
    assertFalse(Files.isSymbolicLink(copy));
  }
}
