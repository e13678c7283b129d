package dev.flotilla.vm.qemu;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The jail each QEMU runs in, after Firecracker's jailer: its own mount namespace whose root is a
 * read-only tree holding only what QEMU needs to run (its binary, the libraries {@code ldd} names,
 * its accelerator modules, its firmware), with the VM's kernel and initramfs (read-only) and its
 * own run directory (sockets) bound in, a private /dev with null, urandom and (only with KVM) kvm;
 * new network, IPC and UTS namespaces; then {@code setpriv} drops to the sandbox's own uid with no
 * capabilities and no_new_privs, and execs QEMU, which turns on its own seccomp sandbox.
 *
 * <p>Every step is an {@code exec} in one process (sh, setsid, unshare, sh, setpriv, QEMU), so the
 * pid the node spawned is QEMU's own: adopt-by-pid and exit codes work as before. No pid
 * namespace: it would need a fork (unshare stays as the pid the node knows, and its death does not
 * end a QEMU that changed uid, since a credential change clears the parent-death signal), and a
 * QEMU with no /proc, another uid and {@code spawn=deny} sees and signals no other process anyway.
 *
 * <p>The tree is built once per set of host files (a digest of their paths, sizes and mtimes) under
 * the driver's state root, from hard links where the file system allows (copies otherwise, and
 * always for set-id files, whose bits are dropped), and shared read-only by every jail: the per-VM
 * cost is a handful of mounts in the VM's namespace, which vanish with it.
 */
final class QemuJail {

  private static final Logger LOG = LoggerFactory.getLogger(QemuJail.class);

  /** Where the VM's files appear inside the jail. */
  static final String KERNEL = "/vm/vmlinux";
  static final String INITRAMFS = "/vm/initramfs.cpio";
  static final String RUN = "/run";
  /** The image's block device (read-only), the sandbox's writable disk, the node's config disk (read-only). */
  static final String IMAGE_DISK = "/vm/image";
  static final String WRITABLE_DISK = "/vm/disk";
  static final String CONFIG_DISK = "/vm/config";
  /** A VM template's memory file ({@link QemuTemplates}): the template's own, or the one its clones map privately. */
  static final String MEMORY = "/vm/memory";

  /** Mount points in the tree; the rest of it is read-only files. */
  private static final List<String> PLACEHOLDER_DIRS = List.of("dev", "run", "proc", "vm", ".oldroot");
  private static final List<String> PLACEHOLDER_FILES = List.of(KERNEL.substring(1), INITRAMFS.substring(1),
      IMAGE_DISK.substring(1), WRITABLE_DISK.substring(1), CONFIG_DISK.substring(1), MEMORY.substring(1));
  /** What runs inside the tree before QEMU: dropping privileges and detaching the host's root. */
  private static final List<String> HELPERS = List.of("setpriv", "umount");
  /** Changing the script changes the tree's key, so an older tree is never used with a newer script. */
  private static final int VERSION = 3;

  /**
   * Runs as root in the new mount namespace ({@code unshare --mount --propagation private}, so
   * nothing here reaches the host's mounts): bind the tree onto itself (pivot_root needs a mount
   * point), mount the VM's pieces into it, make its root read-only, pivot into it, detach the
   * host's root, and exec setpriv, which execs QEMU. /proc is mounted only for umount's own use
   * (libmount reads mountinfo) and gone before QEMU runs. {@code -n}: no userspace mount table
   * (it would land in the host's /run/mount before the pivot, and in the VM's run directory after).
   * Arguments: tree, run dir, kernel, initramfs, uid, kvm device ("major:minor" or "-"), image disk,
   * writable disk, config disk, memory file, supplementary group (each "-" for none), then QEMU's
   * argv. The writable disk and the memory file are the only files bound writable (the writable
   * disk is QEMU's own, the sandbox's uid; the memory file is a template's: its own while it is
   * built, then root's and the template's group's, which its clones join, since QEMU 7.2 opens a
   * memory-backend-file read-write even for a private mapping); the image and config disks are
   * read-only binds of root's 0644 files.
   */
  static final String SCRIPT = String.join("\n",
      "set -eu",
      "tree=$1 run=$2 kernel=$3 initrd=$4 uid=$5 kvm=$6 image=$7 disk=$8 config=$9 memory=${10} group=${11}; shift 11",
      "mount -n --bind \"$tree\" \"$tree\"",
      "mount -n -t tmpfs -o mode=0755,size=64k,nosuid,noexec flotilla-dev \"$tree/dev\"",
      "mknod -m 666 \"$tree/dev/null\" c 1 3",
      "mknod -m 444 \"$tree/dev/urandom\" c 1 9",
      "if [ \"$kvm\" != - ]; then",
      "  mknod -m 600 \"$tree/dev/kvm\" c \"${kvm%:*}\" \"${kvm#*:}\"",
      "  chown \"$uid:$uid\" \"$tree/dev/kvm\"",
      "fi",
      "mount -n --bind -o nosuid,nodev,noexec \"$run\" \"$tree/run\"",
      "mount -n --bind -o ro,nosuid,nodev,noexec \"$kernel\" \"$tree" + KERNEL + "\"",
      "mount -n --bind -o ro,nosuid,nodev,noexec \"$initrd\" \"$tree" + INITRAMFS + "\"",
      "[ \"$image\" = - ] || mount -n --bind -o ro,nosuid,nodev,noexec \"$image\" \"$tree" + IMAGE_DISK + "\"",
      "[ \"$disk\" = - ] || mount -n --bind -o nosuid,nodev,noexec \"$disk\" \"$tree" + WRITABLE_DISK + "\"",
      "[ \"$config\" = - ] || mount -n --bind -o ro,nosuid,nodev,noexec \"$config\" \"$tree" + CONFIG_DISK + "\"",
      "[ \"$memory\" = - ] || mount -n --bind -o nosuid,nodev,noexec \"$memory\" \"$tree" + MEMORY + "\"",
      "groups=--clear-groups",
      "[ \"$group\" = - ] || groups=--groups=\"$group\"",
      "mount -n -t proc -o nosuid,nodev,noexec proc \"$tree/proc\"",
      "mount -n -o remount,bind,ro,nosuid,nodev \"$tree\"",
      "cd \"$tree\"",
      "pivot_root . .oldroot",
      "umount -n -l /.oldroot",
      "umount -n /proc",
      "cd /",
      "exec setpriv --reuid=\"$uid\" --regid=\"$uid\" \"$groups\" --no-new-privs --inh-caps=-all"
          + " --bounding-set=-all -- \"$@\"");

  private QemuJail() {}

  /**
   * The full command the node spawns: waits on stdin until the node has put it in its cgroups
   * (so everything after, mounts included, is accounted there), then a new session (QEMU
   * outlives the node), new namespaces, the jail script, QEMU.
   *
   * @param qemuArgv QEMU's arguments after the binary, with the jail's paths
   * @param kvmDevice "major:minor" of /dev/kvm, or empty without KVM
   */
  static List<String> launch(Path tree, Path qemuInTree, Path runDir, Path kernel, Path initramfs, long uid,
      Optional<String> kvmDevice, List<String> qemuArgv) {
    return launch(tree, qemuInTree, runDir, kernel, initramfs, uid, kvmDevice, Optional.empty(), Optional.empty(), qemuArgv);
  }

  /**
   * A template's memory file bound at {@link #MEMORY}, and the group QEMU joins to open it (empty:
   * none, QEMU owns the file).
   */
  record Memory(Path file, java.util.OptionalLong group) {}

  /** The guest's disks on the host: the image's (read-only), the sandbox's writable one, the config disk. */
  record Disks(Path image, Path writable, Path config) {}

  /** As above, with the guest's disks bound into the jail at {@link #IMAGE_DISK} and its siblings. */
  static List<String> launch(Path tree, Path qemuInTree, Path runDir, Path kernel, Path initramfs, long uid,
      Optional<String> kvmDevice, Optional<Disks> disks, List<String> qemuArgv) {
    return launch(tree, qemuInTree, runDir, kernel, initramfs, uid, kvmDevice, disks, Optional.empty(), qemuArgv);
  }

  /** As above, with a template's memory file ({@link QemuTemplates}). */
  static List<String> launch(Path tree, Path qemuInTree, Path runDir, Path kernel, Path initramfs, long uid,
      Optional<String> kvmDevice, Optional<Disks> disks, Optional<Memory> memory, List<String> qemuArgv) {
    List<String> cmd = new ArrayList<>(List.of(
        "/bin/sh", "-c", "read _ || exit 97; exec \"$@\" </dev/null", "flotilla-qemu",
        "setsid", "unshare", "--mount", "--propagation", "private", "--net", "--ipc", "--uts", "--",
        "/bin/sh", "-c", SCRIPT, "flotilla-jail",
        tree.toString(), runDir.toString(), kernel.toString(), initramfs.toString(), Long.toString(uid),
        kvmDevice.orElse("-"),
        disks.map(d -> d.image().toString()).orElse("-"),
        disks.map(d -> d.writable().toString()).orElse("-"),
        disks.map(d -> d.config().toString()).orElse("-"),
        memory.map(m -> m.file().toString()).orElse("-"),
        memory.filter(m -> m.group().isPresent()).map(m -> Long.toString(m.group().getAsLong())).orElse("-"),
        qemuInTree.toString()));
    cmd.addAll(qemuArgv);
    return cmd;
  }

  /** "major:minor" of a character device, from its rdev. */
  static Optional<String> deviceNumbers(Path device) {
    try {
      long rdev = ((Number) Files.getAttribute(device, "unix:rdev")).longValue();
      long major = ((rdev >>> 8) & 0xfffL) | ((rdev >>> 32) & ~0xfffL);
      long minor = (rdev & 0xffL) | ((rdev >>> 12) & ~0xffL);
      return Optional.of(major + ":" + minor);
    } catch (IOException | RuntimeException e) {
      return Optional.empty();
    }
  }

  /** Host tools the jail needs outside the tree, or why one is missing. */
  static Optional<String> missingHostTools() {
    for (String t : List.of("setsid", "unshare", "mount", "umount", "mknod", "chown", "pivot_root", "setpriv")) {
      if (which(t).isEmpty()) return Optional.of(t + " is not installed (util-linux / coreutils)");
    }
    return Optional.empty();
  }

  /** The jail's shared root tree and where QEMU sits in it. */
  record Tree(Path root, Path qemu) {}

  /**
   * The tree for this host's QEMU: built under {@code base} if no tree with the same key is there.
   * Safe against another node (or test JVM) building the same tree at once: each builds its own
   * and renames it into place; the loser uses the winner's.
   */
  static Tree ensure(Path base, String qemuBinary) throws IOException {
    Path qemu = resolveBinary(qemuBinary).orElseThrow(() -> new IOException(qemuBinary + " not found on PATH"));
    Set<Path> files = new LinkedHashSet<>();
    files.add(qemu);
    List<Path> helpers = new ArrayList<>();
    for (String h : HELPERS) helpers.add(which(h).orElseThrow(() -> new IOException(h + " not found (util-linux)")));
    files.addAll(helpers);
    List<Path> modules = accelModules(qemu);
    files.addAll(modules);
    Set<Path> libs = new LinkedHashSet<>();
    for (Path f : new ArrayList<>(files)) libs.addAll(ldd(f));
    files.addAll(libs);
    List<Path> data = dataFiles(qemu);
    files.addAll(data);

    StringBuilder keyInput = new StringBuilder("v" + VERSION + "\n" + SCRIPT + "\n");
    for (Path f : files) {
      Path real = f.toRealPath();
      keyInput.append(f).append('|').append(real).append('|').append(Files.size(real)).append('|')
          .append(Files.getLastModifiedTime(real).toMillis()).append('\n');
    }
    String key = sha256(keyInput.toString()).substring(0, 16);
    Path root = base.resolve("jail-root").resolve(key);
    Path qemuInTree = treePath(qemu);
    if (Files.isDirectory(root.resolve(".complete"))) return new Tree(root, qemuInTree);

    Files.createDirectories(root.getParent());
    Files.setPosixFilePermissions(base, PosixFilePermissions.fromString("rwx------"));
    Path tmp = Files.createTempDirectory(root.getParent(), key + ".building-");
    try {
      build(tmp, files);
      Files.createDirectory(tmp.resolve(".complete"));
      try {
        Files.move(tmp, root, StandardCopyOption.ATOMIC_MOVE);
        LOG.info("qemu jail root {} built ({} files)", root, files.size());
      } catch (IOException e) {
        // rename(2) onto a non-empty directory: another builder won (ENOTEMPTY is not always
        // reported as DirectoryNotEmptyException); anything else is ours to report
        if (!Files.isDirectory(root.resolve(".complete"))) throw e;
        deleteTree(tmp);
      }
    } catch (IOException | RuntimeException e) {
      deleteTree(tmp);
      throw e;
    }
    if (!Files.isDirectory(root.resolve(".complete"))) throw new IOException("jail root " + root + " is incomplete");
    return new Tree(root, qemuInTree);
  }

  private static void build(Path tree, Set<Path> files) throws IOException {
    Files.setPosixFilePermissions(tree, PosixFilePermissions.fromString("rwxr-xr-x"));
    // /bin, /lib, /lib64 ... as the host has them (links into /usr on a merged-/usr host), so that
    // the paths the binaries were linked with (the ELF interpreter, /lib/x86_64-linux-gnu/...) resolve.
    try (Stream<Path> top = Files.list(Path.of("/"))) {
      for (Path p : top.toList()) {
        if (!Files.isSymbolicLink(p)) continue;
        Path target = Files.readSymbolicLink(p);
        if (!target.isAbsolute() && target.toString().startsWith("usr/")) {
          Files.createSymbolicLink(tree.resolve(p.getFileName().toString()), target);
        }
      }
    }
    for (Path f : files) {
      Path dest = tree.resolve(treePath(f).toString().substring(1));
      if (Files.exists(dest, LinkOption.NOFOLLOW_LINKS)) continue;
      mkdirs(tree, dest.getParent());
      Path real = f.toRealPath();
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(real);
      boolean setId = Files.getAttribute(real, "unix:mode") instanceof Integer mode && (mode & 06000) != 0;
      if (setId) {
        Files.copy(real, dest);
        Files.setPosixFilePermissions(dest, PosixFilePermissions.fromString("rwxr-xr-x"));
        continue;
      }
      try {
        Files.createLink(dest, real);
      } catch (IOException | UnsupportedOperationException e) {
        Files.copy(real, dest);
        Files.setPosixFilePermissions(dest, perms);
      }
    }
    for (String d : PLACEHOLDER_DIRS) mkdirs(tree, tree.resolve(d));
    for (String f : PLACEHOLDER_FILES) {
      mkdirs(tree, tree.resolve(f).getParent());
      Files.createFile(tree.resolve(f), PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-r--r--")));
    }
  }

  private static void mkdirs(Path tree, Path dir) throws IOException {
    if (Files.isDirectory(dir, LinkOption.NOFOLLOW_LINKS)) return;
    if (!dir.startsWith(tree)) throw new IOException(dir + " is outside the jail tree");
    mkdirs(tree, dir.getParent());
    Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwxr-xr-x")));
  }

  /**
   * A host file's place in the tree: its directory's real path plus its own name, so that a file
   * reached through /lib (a link to usr/lib) lands in usr/lib, and /lib resolves in the tree as on
   * the host. The file itself may be a link (libc.so.6 -> ...): its content is what lands there.
   */
  static Path treePath(Path hostFile) throws IOException {
    Path parent = hostFile.toAbsolutePath().getParent().toRealPath();
    return parent.resolve(hostFile.getFileName().toString());
  }

  /** The libraries {@code ldd} lists for a binary or module, the ELF interpreter included. */
  static List<Path> ldd(Path binary) throws IOException {
    List<Path> out = new ArrayList<>();
    for (String line : run(List.of("ldd", binary.toString())).split("\n")) {
      String l = line.trim();
      int arrow = l.indexOf("=>");
      String path = arrow >= 0 ? l.substring(arrow + 2).trim() : l;
      int sp = path.indexOf(' ');
      if (sp >= 0) path = path.substring(0, sp);
      if (path.startsWith("/")) out.add(Path.of(path));
    }
    return out;
  }

  /**
   * QEMU's accelerator modules ({@code accel-tcg-x86_64.so}: Debian builds TCG as a module), found
   * next to its libraries in {@code <libdir>/qemu}. UI, audio and display modules are left out.
   */
  private static List<Path> accelModules(Path qemu) throws IOException {
    List<Path> out = new ArrayList<>();
    Set<Path> dirs = new LinkedHashSet<>();
    for (Path lib : ldd(qemu)) {
      Path parent = lib.toAbsolutePath().getParent().toRealPath();
      dirs.add(parent.resolve("qemu"));
    }
    for (Path d : dirs) {
      if (!Files.isDirectory(d)) continue;
      try (Stream<Path> s = Files.list(d)) {
        s.filter(p -> p.getFileName().toString().startsWith("accel-") && p.getFileName().toString().endsWith(".so"))
            .sorted().forEach(out::add);
      }
    }
    return out;
  }

  /** The firmware and option ROMs in QEMU's data directories ({@code -L help}), links resolved. */
  private static List<Path> dataFiles(Path qemu) throws IOException {
    List<Path> out = new ArrayList<>();
    for (String line : run(List.of(qemu.toString(), "-L", "help")).split("\n")) {
      if (!line.startsWith("/")) continue;
      Path dir = Path.of(line.trim()).normalize();
      if (!Files.isDirectory(dir)) continue;
      try (Stream<Path> s = Files.walk(dir, 2)) {
        for (Path p : s.sorted().toList()) {
          if (Files.isRegularFile(p)) out.add(p); // follows links; a dangling one is not a regular file
        }
      }
    }
    return out;
  }

  static Optional<Path> resolveBinary(String binary) {
    if (binary.contains("/")) {
      Path p = Path.of(binary).toAbsolutePath();
      return Files.isExecutable(p) ? Optional.of(p) : Optional.empty();
    }
    return which(binary);
  }

  static Optional<Path> which(String name) {
    List<String> dirs = new ArrayList<>(List.of(System.getenv().getOrDefault("PATH", "").split(":")));
    dirs.addAll(List.of("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"));
    for (String d : dirs) {
      if (d.isEmpty()) continue;
      Path p = Path.of(d, name);
      if (Files.isRegularFile(p) && Files.isExecutable(p)) return Optional.of(p);
    }
    return Optional.empty();
  }

  private static String run(List<String> cmd) throws IOException {
    return run(cmd, java.time.Duration.ofSeconds(30));
  }

  /** Runs a host tool and returns its output (stderr merged); an IOException says how it failed. */
  static String run(List<String> cmd, java.time.Duration timeout) throws IOException {
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    try {
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) throw new IOException(String.join(" ", cmd) + " did not finish");
      if (p.exitValue() != 0) throw new IOException(String.join(" ", cmd) + " failed: " + out.strip());
      return out;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted running " + cmd.get(0));
    } finally {
      p.destroyForcibly();
    }
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  static void deleteTree(Path dir) {
    // The run directory inside is the QEMU uid's to write: never follow what it may have put there.
    try {
      dev.flotilla.vm.NodeOnlyFiles.deleteTree(dir);
    } catch (IOException | RuntimeException e) {
      LOG.warn("cannot delete {}: {}", dir, e.toString());
    }
  }
}
