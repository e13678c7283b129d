package dev.flotilla.vm.process;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.stream.Stream;

/**
 * A sandbox's own writable layer on this node, and the root file system made of it.
 *
 * <p>The layer is an ext4 file system in a sparse file of {@code disk_mib} (node-only), mounted by
 * the node: a write past the cap fails with ENOSPC inside the sandbox and never fills the node's
 * disk. It holds overlayfs' upper and work directories and survives the sandbox's VM restarts on
 * this node. The image's layers are the overlay's lower directories, shared read-only by every
 * sandbox of that image.
 *
 * <p>Ownership: the image's files belong to ids 0..65535, the sandbox's root is host id
 * {@code hostIdStart}. Once per layer (and again if the sandbox's range changes), every entry of the
 * merged tree is chowned into the sandbox's range; with {@code metacopy=on} that copies metadata only
 * into the upper directory, never file data, so the shared lower layers stay untouched.
 */
final class WritableLayer {
  static final String OWNER_FILE = ".flotilla-id-base";
  private static final long RANGE = 65536;

  private final Path image;
  private final Path mountPoint;

  /**
   * @param image the layer's file system image (in a node-only directory)
   * @param mountPoint where the node mounts it (in the run root, which the sandbox's uid can traverse)
   */
  WritableLayer(Path image, Path mountPoint) {
    this.image = image;
    this.mountPoint = mountPoint;
  }

  Path image() {
    return image;
  }

  Path mountPoint() {
    return mountPoint;
  }

  /** Creates the layer on first use and mounts it if it is not mounted. */
  void ensureMounted(int diskMiB) throws IOException {
    if (!Files.exists(image, LinkOption.NOFOLLOW_LINKS)) {
      Ext4Disk.create(image, diskMiB);
    }
    Files.createDirectories(mountPoint);
    if (!Mounts.isMountPoint(mountPoint)) {
      Mounts.run("mount", "-o", "loop,nosuid,nodev", image.toString(), mountPoint.toString());
    }
    // Traversable, not listable: the sandbox's uid reaches its agent directory here (runc resolves
    // bind sources inside the user namespace); upper/ and work/ stay root's.
    Files.setPosixFilePermissions(mountPoint, PosixFilePermissions.fromString("rwx--x--x"));
    // upper/ is the merged root's own inode (its mode is what / has inside the sandbox): 0755.
    for (String d : List.of("upper", "work")) {
      Path p = mountPoint.resolve(d);
      if (!Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) {
        Files.createDirectory(p, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString(d.equals("upper") ? "rwxr-xr-x" : "rwx------")));
      }
    }
  }

  /**
   * Mounts the sandbox's root at {@code target}: the image's layers (top first) under the upper
   * directory, then shifts ownership into the sandbox's id range if the layer is not there yet.
   */
  void mountRoot(List<Path> lowerTopFirst, Path target, long hostIdStart) throws IOException {
    if (lowerTopFirst.isEmpty()) throw new IOException("an image needs at least one layer");
    Files.createDirectories(target);
    if (!Mounts.isMountPoint(target)) {
      StringBuilder lower = new StringBuilder();
      for (Path l : lowerTopFirst) {
        String s = l.toAbsolutePath().toString();
        if (s.contains(":") || s.contains(",")) throw new IOException("layer path not usable by overlayfs: " + s);
        if (lower.length() > 0) lower.append(':');
        lower.append(s);
      }
      Mounts.run("mount", "-t", "overlay", "overlay", "-o",
          "lowerdir=" + lower + ",upperdir=" + mountPoint.resolve("upper") + ",workdir=" + mountPoint.resolve("work")
              + ",metacopy=on,redirect_dir=on,nosuid,nodev",
          target.toString());
    }
    Path owner = mountPoint.resolve(OWNER_FILE);
    long base = readBase(owner);
    if (base != hostIdStart) {
      shift(target, base, hostIdStart);
      Files.writeString(owner, Long.toString(hostIdStart), StandardCharsets.US_ASCII);
    }
  }

  /** Unmounts the layer's file system (after every root of it is unmounted). */
  void unmount() throws IOException {
    Mounts.unmount(mountPoint);
  }

  /**
   * Unmounts the layer's file system so that its image can be copied as it is (a snapshot) or
   * replaced (a restore): never lazily, so a layer still in use (a root of it mounted) is an error
   * rather than a file system that lives on and writes later. Not mounted: nothing to do.
   */
  void unmountNow() throws IOException {
    if (Mounts.isMountPoint(mountPoint)) Mounts.run("umount", mountPoint.toString());
  }

  /**
   * Fails unless no loop device holds the image any more: the node's loop mount is released with
   * its unmount (autoclear), so one still attached is a mount of it elsewhere (another mount
   * namespace) whose file system may still hold unwritten data.
   */
  void requireDetached() throws IOException {
    if (!Files.exists(image, LinkOption.NOFOLLOW_LINKS)) return;
    String loops = "";
    for (int i = 0; i < 50; i++) { // a detach is immediate on the kernels seen so far: a little slack
      loops = Mounts.run(java.time.Duration.ofSeconds(30), "losetup", "-j", image.toString()).strip();
      if (loops.isEmpty()) return;
      try {
        Thread.sleep(100);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted waiting for the layer's loop device to go");
      }
    }
    throw new IOException("the layer " + image + " is still attached after its unmount (" + loops.replace('\n', ';')
        + "): mounted elsewhere, so a copy of it would not be consistent");
  }

  private static long readBase(Path owner) {
    try {
      return Long.parseLong(Files.readString(owner, StandardCharsets.US_ASCII).strip());
    } catch (IOException | NumberFormatException e) {
      return 0; // a new layer: the image's own ids
    }
  }

  /** Moves every entry's uid/gid from the range at {@code from} to the range at {@code to}; never follows links. */
  private static void shift(Path root, long from, long to) throws IOException {
    try (Stream<Path> walk = Files.walk(root)) {
      for (Path p : (Iterable<Path>) walk::iterator) {
        int uid = (Integer) Files.getAttribute(p, "unix:uid", LinkOption.NOFOLLOW_LINKS);
        int gid = (Integer) Files.getAttribute(p, "unix:gid", LinkOption.NOFOLLOW_LINKS);
        Files.setAttribute(p, "unix:uid", (int) moved(uid, from, to), LinkOption.NOFOLLOW_LINKS);
        Files.setAttribute(p, "unix:gid", (int) moved(gid, from, to), LinkOption.NOFOLLOW_LINKS);
      }
    }
  }

  static long moved(long id, long from, long to) {
    long u = Integer.toUnsignedLong((int) id);
    long rel = u >= from && u < from + RANGE ? u - from : (u < RANGE ? u : RANGE - 2); // unknown: nobody
    return to + rel;
  }
}
