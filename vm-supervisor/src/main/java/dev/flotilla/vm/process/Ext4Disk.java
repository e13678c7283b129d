package dev.flotilla.vm.process;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;

/**
 * A sandbox's capped disk: an ext4 file system in a sparse file of a fixed size, so that a write
 * past the cap is ENOSPC inside the sandbox and never fills the node's disk. The process driver
 * loop-mounts it as a writable layer; the qemu driver hands it to its guest as a block device.
 */
public final class Ext4Disk {
  private Ext4Disk() {}

  /**
   * Makes {@code image} (node-only, 0600, the node's) as a fresh empty ext4 of {@code mib} MiB, built
   * beside it and renamed into place, so that a crash never leaves a half-made disk under its name.
   */
  public static void create(Path image, int mib) throws IOException {
    Path tmp = image.resolveSibling(image.getFileName() + ".tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    try {
      try (RandomAccessFile f = new RandomAccessFile(tmp.toFile(), "rw")) {
        f.setLength(mib * 1024L * 1024L);
      }
      // No reserved blocks: the cap is the sandbox's, all of it.
      Mounts.run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "nodiscard", tmp.toString());
      Files.move(tmp, image, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      Files.deleteIfExists(tmp);
    }
  }

  /** How long a copy of a disk may take: a large, full one is gigabytes. */
  private static final java.time.Duration COPY_TIMEOUT = java.time.Duration.ofMinutes(10);

  /**
   * Copies the disk {@code from} to a new file {@code to}, keeping its holes (and sharing its blocks
   * where the file system can: a reflink). Refuses an existing {@code to} (never writes through a
   * link left there). The copy has {@code from}'s mode, the node's ownership. Used by both drivers'
   * snapshots and restores.
   */
  public static void copySparse(Path from, Path to) throws IOException {
    if (Files.exists(to, java.nio.file.LinkOption.NOFOLLOW_LINKS)) throw new IOException(to + " exists");
    Mounts.run(COPY_TIMEOUT, "cp", "--sparse=always", "--reflink=auto", "--", from.toString(), to.toString());
  }

  /** What a file takes on disk (its allocated blocks), for sizes reported of sparse copies; -1 if unknown. */
  public static long allocatedBytes(Path file) {
    try {
      String[] f = Mounts.run(java.time.Duration.ofSeconds(30), "stat", "-c", "%b %B", "--", file.toString()).strip().split(" ");
      return Long.parseLong(f[0]) * Long.parseLong(f[1]);
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }
}
