package dev.flotilla.vm.qemu;

import dev.flotilla.vm.NodeOnlyFiles;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

/**
 * The layout of a qemu VM's snapshot ({@link QemuVm#suspend}, {@link QemuVm#snapshot}) and what its
 * restore needs from it. One node-only directory (0700):
 *
 * <ul>
 *   <li>{@code state}: QEMU's migration stream, all of the guest's RAM (zero pages skipped) and its
 *       devices (0600);
 *   <li>{@code disk}: the sandbox's writable disk, copied sparsely while the guest was stopped (0600);
 *   <li>{@code image.erofs}: the image's block device, a hard link to the exact file the guest ran
 *       (its page cache refers to it), a copy on another file system;
 *   <li>{@code config.disk}: the config disk (root's 0644, read-only to the guest);
 *   <li>{@code vmlinux}, {@code initramfs.cpio}: the kernel and initramfs it booted (links, or
 *       copies), so that a guest image rebuilt since does not break its restore;
 *   <li>{@code agent.secret}: the secret the saved agent holds (0600): the restored VM's first
 *       handshake presents it, with a rebirth to its new identity;
 *   <li>{@code snapshot.properties}: the rest (0600, see {@link Meta}).
 * </ul>
 */
final class QemuSnapshots {

  static final String META = "snapshot.properties";
  static final String STATE = "state";
  static final String DISK = "disk";
  static final String IMAGE = "image.erofs";
  static final String CONFIG = "config.disk";
  /** The kernel and initramfs the guest booted: its ROMs and RAM layout follow from them. */
  static final String KERNEL = "vmlinux";
  static final String INITRAMFS = "initramfs.cpio";
  static final int VERSION = 1;

  private QemuSnapshots() {}

  /**
   * What a restore needs besides the files.
   *
   * @param sandboxId the identity the saved agent holds
   * @param incarnation the incarnation it holds
   * @param vcpus the VM's vCPUs, which its restore must have
   * @param memoryMiB its RAM
   * @param accel {@code kvm} or {@code tcg}: the state of one does not load into the other
   * @param argv the exact QEMU command line it ran with (jail paths), binary first
   * @param template the template it was a clone of, empty if it booted cold (information only: the
   *     snapshot holds all of its RAM and needs no template)
   * @param stateBytes size of {@link #STATE}
   * @param diskBytes apparent size of {@link #DISK}
   * @param diskAllocatedBytes what {@link #DISK} takes on the host
   * @param createdUnixMs when the guest was stopped for it
   */
  record Meta(String sandboxId, long incarnation, int vcpus, int memoryMiB, String accel, List<String> argv, String template,
      long stateBytes, long diskBytes, long diskAllocatedBytes, long createdUnixMs) {
    Meta {
      argv = List.copyOf(argv);
    }
  }

  static void write(Path dir, Meta m) throws IOException {
    Properties p = new Properties();
    p.setProperty("driver", "qemu"); // information: the process driver's restore names it when it refuses one
    p.setProperty("version", Integer.toString(VERSION));
    p.setProperty("sandboxId", m.sandboxId());
    p.setProperty("incarnation", Long.toString(m.incarnation()));
    p.setProperty("vcpus", Integer.toString(m.vcpus()));
    p.setProperty("memoryMiB", Integer.toString(m.memoryMiB()));
    p.setProperty("accel", m.accel());
    p.setProperty("argv.count", Integer.toString(m.argv().size()));
    for (int i = 0; i < m.argv().size(); i++) p.setProperty("argv." + i, m.argv().get(i));
    p.setProperty("template", m.template());
    p.setProperty("stateBytes", Long.toString(m.stateBytes()));
    p.setProperty("diskBytes", Long.toString(m.diskBytes()));
    p.setProperty("diskAllocatedBytes", Long.toString(m.diskAllocatedBytes()));
    p.setProperty("createdUnixMs", Long.toString(m.createdUnixMs()));
    var bytes = new ByteArrayOutputStream();
    try (Writer w = new OutputStreamWriter(bytes, StandardCharsets.UTF_8)) {
      p.store(w, "Flotilla qemu snapshot: what its restore needs");
    }
    NodeOnlyFiles.writePrivateFile(dir.resolve(META), bytes.toByteArray());
  }

  /** Reads a snapshot's metadata, trusting only a file the node wrote (regular, the node's, 0600). */
  static Meta read(Path dir) throws IOException {
    byte[] raw = NodeOnlyFiles.readNodeFile(dir.resolve(META), 1 << 20, false);
    Properties p = new Properties();
    try (Reader r = new InputStreamReader(new java.io.ByteArrayInputStream(raw), StandardCharsets.UTF_8)) {
      p.load(r);
    }
    try {
      int version = Integer.parseInt(required(p, "version"));
      if (version != VERSION) throw new IOException("snapshot " + dir + " has layout version " + version + ", this node reads " + VERSION);
      int n = Integer.parseInt(required(p, "argv.count"));
      List<String> argv = new ArrayList<>();
      for (int i = 0; i < n; i++) argv.add(required(p, "argv." + i));
      return new Meta(required(p, "sandboxId"), Long.parseLong(required(p, "incarnation")), Integer.parseInt(required(p, "vcpus")),
          Integer.parseInt(required(p, "memoryMiB")), required(p, "accel"), argv, p.getProperty("template", ""),
          Long.parseLong(required(p, "stateBytes")), Long.parseLong(required(p, "diskBytes")),
          Long.parseLong(required(p, "diskAllocatedBytes")), Long.parseLong(required(p, "createdUnixMs")));
    } catch (NumberFormatException e) {
      throw new IOException("corrupt snapshot metadata in " + dir + ": " + e.getMessage(), e);
    }
  }

  private static String required(Properties p, String key) throws IOException {
    String v = p.getProperty(key);
    if (v == null) throw new IOException("snapshot metadata lacks '" + key + "'");
    return v;
  }

  /** The value after {@code flag} in a QEMU argv. */
  static String arg(List<String> argv, String flag) throws IOException {
    int i = argv.indexOf(flag);
    if (i < 0 || i + 1 >= argv.size()) throw new IOException("QEMU's command line has no " + flag);
    return argv.get(i + 1);
  }

  /**
   * The command line a restore runs: the saved one under the new VM's {@code name}, waiting for its
   * state ({@code -incoming defer}). A template clone's RAM was its template's memory file mapped
   * privately; the snapshot holds all of it, so the restore maps plain RAM under the same backend
   * id ({@code mem}: RAM blocks are matched by name) and depends on the template no more.
   */
  static List<String> restoreArgv(Meta m, String name) {
    List<String> out = new ArrayList<>();
    List<String> in = m.argv();
    for (int i = 0; i < in.size(); i++) {
      String a = in.get(i);
      if (a.equals("-incoming") && i + 1 < in.size()) {
        i++;
        continue;
      }
      if (a.equals("-name") && i + 1 < in.size()) {
        out.add(a);
        out.add(name);
        i++;
        continue;
      }
      if (a.startsWith("memory-backend-file,id=mem,")) {
        out.add("memory-backend-ram,id=mem,size=" + m.memoryMiB() + "M");
        continue;
      }
      out.add(a);
    }
    out.add("-incoming");
    out.add("defer");
    return out;
  }

  /**
   * Why a snapshot's guest cannot be restored with the network asked for, or null when it can:
   * the guest configured its network at its boot, from the kernel command line the snapshot keeps,
   * and its virtio-net device is in the saved state. So a snapshot taken without a network restores
   * only without one, and one taken with egress only with egress, on a node that gives guests the
   * same side of the network (address, gateway, resolver: {@link QemuNetwork#guestConfig}).
   *
   * @param guestConfig this node's guests' network configuration for an egress restore, null for
   *     network none
   */
  static String networkRefusal(Meta m, String guestConfig) {
    boolean saved = m.argv().contains("-netdev");
    String savedConfig = null;
    for (String a : m.argv()) {
      for (String word : a.split(" ")) {
        if (word.startsWith(QemuNetwork.KERNEL_ARG)) savedConfig = word.substring(QemuNetwork.KERNEL_ARG.length());
      }
    }
    if (guestConfig == null) {
      return saved ? "it was taken with egress networking and restores only with it (the sandbox asks for network none)" : null;
    }
    if (!saved) return "it was taken without a network and restores only without one (the sandbox asks for network egress)";
    if (!guestConfig.equals(savedConfig)) {
      return "its guest configured its network as " + savedConfig + " at its boot, and this node gives guests " + guestConfig
          + ": restore it on a node that gives its guests the network of the node it was taken on";
    }
    return null;
  }

  /** A hard link to {@code from} at {@code to}; a copy when they are on different file systems. */
  static void linkOrCopy(Path from, Path to) throws IOException {
    try {
      Files.createLink(to, from);
    } catch (IOException | UnsupportedOperationException e) {
      Files.copy(from, to, java.nio.file.StandardCopyOption.COPY_ATTRIBUTES);
    }
  }
}
