package dev.flotilla.vm.process;

import dev.flotilla.vm.NodeOnlyFiles;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Properties;
import java.util.Set;

/**
 * The layout of a process-driver snapshot ({@link ProcessVm#suspend}) and what its restore
 * ({@link dev.flotilla.vm.VmSpec#RESTORE_FROM}) checks of it. CRIU cannot checkpoint here, so a
 * snapshot holds no memory: it is the sandbox's writable layer, and its restore boots the sandbox
 * afresh (new processes) on that layer, on this node or any other. One node-only directory (0700):
 *
 * <ul>
 *   <li>{@code disk}: the writable layer's ext4 image, copied sparsely while it was unmounted (0600);
 *   <li>{@code snapshot.properties}: {@code driver=process}, the layout's {@code version}, the
 *       {@code sandbox-id} and {@code incarnation} it was taken of, the layer's {@code disk-mib}, the
 *       copy's sizes and when it was taken (0600, written last: a directory without it is no snapshot).
 * </ul>
 */
final class ProcessSnapshots {

  static final String META = "snapshot.properties";
  static final String DISK = "disk";
  static final int VERSION = 1;
  private static final Set<PosixFilePermission> GROUP_OR_OTHER_WRITE =
      Set.of(PosixFilePermission.GROUP_WRITE, PosixFilePermission.OTHERS_WRITE);

  private ProcessSnapshots() {}

  /**
   * What {@code snapshot.properties} says.
   *
   * @param sandboxId the sandbox it was taken of, the only one it restores
   * @param incarnation the incarnation that ran then (information)
   * @param diskMiB the writable layer's size
   * @param diskBytes the apparent size of {@link #DISK}
   * @param diskAllocatedBytes what {@link #DISK} took on the host that wrote it
   * @param createdUnixMs when the sandbox was stopped for it
   */
  record Meta(String sandboxId, long incarnation, int diskMiB, long diskBytes, long diskAllocatedBytes, long createdUnixMs) {}

  /** A new private directory (0700) for a snapshot; one that exists must be empty. */
  static Path createDir(Path dir) throws IOException {
    if (Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) {
      try (var s = Files.list(dir)) {
        if (s.findAny().isPresent()) throw new IOException(dir + " exists and is not empty");
      }
    }
    return NodeOnlyFiles.createPrivateDir(dir);
  }

  static void write(Path dir, Meta m) throws IOException {
    Properties p = new Properties();
    p.setProperty("driver", ProcessHypervisor.DRIVER);
    p.setProperty("version", Integer.toString(VERSION));
    p.setProperty("sandbox-id", m.sandboxId());
    p.setProperty("incarnation", Long.toString(m.incarnation()));
    p.setProperty("disk-mib", Integer.toString(m.diskMiB()));
    p.setProperty("disk-bytes", Long.toString(m.diskBytes()));
    p.setProperty("disk-allocated-bytes", Long.toString(m.diskAllocatedBytes()));
    p.setProperty("created-unix-ms", Long.toString(m.createdUnixMs()));
    var bytes = new ByteArrayOutputStream();
    try (Writer w = new OutputStreamWriter(bytes, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla process-driver snapshot: the sandbox's writable layer, no memory");
    }
    NodeOnlyFiles.writePrivateFile(dir.resolve(META), bytes.toByteArray());
  }

  /**
   * The snapshot in {@code dir} as a restore of {@code sandboxId} may use it, checked: a real
   * directory (not a link) of the node's (root's) that nobody else can write, whose
   * {@code snapshot.properties} is the node's own file (0600) saying {@code driver=process},
   * {@code version=1} and this sandbox's id, and whose {@code disk} is a node-only file of the size
   * it says.
   *
   * @throws IOException saying which of these it is not
   */
  static Meta readFor(Path dir, String sandboxId) throws IOException {
    Meta m = read(dir);
    if (!m.sandboxId().equals(sandboxId)) {
      throw new IOException("snapshot " + dir + " is of sandbox " + m.sandboxId() + ", not " + sandboxId
          + " (the process driver restores a sandbox only from its own snapshots)");
    }
    return m;
  }

  /** Reads and checks a snapshot's directory and files (see {@link #readFor}), whichever sandbox it is of. */
  static Meta read(Path dir) throws IOException {
    PosixFileAttributes a;
    try {
      a = Files.readAttributes(dir, PosixFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
    } catch (NoSuchFileException e) {
      throw new IOException("snapshot " + dir + " does not exist");
    }
    if (a.isSymbolicLink()) throw new IOException("snapshot " + dir + " is a symbolic link, not a snapshot's directory");
    if (!a.isDirectory()) throw new IOException("snapshot " + dir + " is not a directory");
    long owner = NodeOnlyFiles.ownerUid(dir);
    if (owner != NodeOnlyFiles.nodeUid()) {
      throw new IOException("snapshot " + dir + " is owned by uid " + owner + ", not by the node (uid " + NodeOnlyFiles.nodeUid() + ")");
    }
    if (a.permissions().stream().anyMatch(GROUP_OR_OTHER_WRITE::contains)) {
      throw new IOException("snapshot " + dir + " is writable by group or others: it is not the node's alone");
    }
    Path metaFile = dir.resolve(META);
    if (!Files.exists(metaFile, LinkOption.NOFOLLOW_LINKS)) {
      throw new IOException(dir + " is not a snapshot (it has no " + META + ")");
    }
    byte[] raw = NodeOnlyFiles.readNodeFile(metaFile, 1 << 20, false);
    Properties p = new Properties();
    try (Reader r = new InputStreamReader(new java.io.ByteArrayInputStream(raw), StandardCharsets.UTF_8)) {
      p.load(r);
    }
    // a qemu snapshot written before snapshots named their driver has QEMU's command line instead
    String driver = p.getProperty("driver", p.containsKey("argv.count") ? "qemu" : "");
    if (driver.isEmpty()) throw new IOException("snapshot " + dir + " names no driver: it is not a process-driver snapshot");
    if (!driver.equals(ProcessHypervisor.DRIVER)) {
      throw new IOException("snapshot " + dir + " was taken by driver " + driver + ": the process driver restores only its own");
    }
    Meta m;
    try {
      int version = Integer.parseInt(required(p, "version", dir));
      if (version != VERSION) {
        throw new IOException("snapshot " + dir + " has layout version " + version + ", this node reads " + VERSION);
      }
      m = new Meta(required(p, "sandbox-id", dir), Long.parseLong(required(p, "incarnation", dir)),
          Integer.parseInt(required(p, "disk-mib", dir)), Long.parseLong(p.getProperty("disk-bytes", "-1")),
          Long.parseLong(p.getProperty("disk-allocated-bytes", "-1")), Long.parseLong(p.getProperty("created-unix-ms", "0")));
    } catch (NumberFormatException e) {
      throw new IOException("corrupt snapshot metadata in " + dir + ": " + e.getMessage(), e);
    }
    Path disk = dir.resolve(DISK);
    if (!Files.exists(disk, LinkOption.NOFOLLOW_LINKS)) throw new IOException("snapshot " + dir + " has no " + DISK);
    NodeOnlyFiles.requirePrivateFile(disk);
    long size = Files.size(disk);
    if (size != m.diskMiB() * 1024L * 1024L) {
      throw new IOException("snapshot " + dir + "'s " + DISK + " is " + size + " bytes, not the " + m.diskMiB() + " MiB it says: incomplete?");
    }
    return m;
  }

  private static String required(Properties p, String key, Path dir) throws IOException {
    String v = p.getProperty(key);
    if (v == null || v.isEmpty()) throw new IOException("snapshot metadata in " + dir + " lacks '" + key + "'");
    return v;
  }
}
