package dev.flotilla.sandbox;

import dev.flotilla.vm.NodeOnlyFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Where suspended sandboxes' snapshots live: one node-only directory (0700, root's) per suspended
 * incarnation, {@code <root>/<sandbox>-<incarnation>/}, whose layout is its driver's. By default
 * the root is on the node's own disk ({@code <data-dir>/snapshots}), so only that node can resume
 * its sandboxes; configured as a directory every node mounts at the same path, any node can.
 *
 * <p>The entity records a snapshot's absolute path in its journal ({@code Suspended}) and is the
 * only one to discard it: after the resumed VM runs, or when the suspended sandbox is stopped or
 * deleted. A path is only ever discarded if it is a directory right under the root.
 */
public final class SnapshotStore {
  private final Path root;

  public SnapshotStore(Path root) {
    this.root = root.toAbsolutePath().normalize();
  }

  public Path root() {
    return root;
  }

  /** The directory a suspend of this incarnation saves into; the root is made (0700) if missing. */
  public Path dirFor(String sandboxId, long incarnation) throws IOException {
    if (!SandboxIds.isValid(sandboxId)) throw new IOException("not a sandbox id: " + sandboxId);
    NodeOnlyFiles.createPrivateDir(root);
    return root.resolve(sandboxId + "-" + incarnation);
  }

  /** A new directory for a fork's snapshot, the start of sandbox {@code forkId}; the root is made (0700) if missing. */
  public Path forkDirFor(String forkId) throws IOException {
    if (!SandboxIds.isValid(forkId)) throw new IOException("not a sandbox id: " + forkId);
    NodeOnlyFiles.createPrivateDir(root);
    return root.resolve(forkId + "-fork-" + java.util.UUID.randomUUID().toString().substring(0, 8));
  }

  /** The recorded snapshot, if it is one of this store's and is on this node (a node-local store of a lost node is not). */
  public Optional<Path> find(String snapshot) {
    Path p = inside(snapshot);
    return p != null && Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS) ? Optional.of(p) : Optional.empty();
  }

  /** Removes a snapshot directory of this store, never following a link. Blocking; a missing one is fine. */
  public void discard(String snapshot) throws IOException {
    Path p = inside(snapshot);
    if (p == null) throw new IOException(snapshot + " is not a snapshot of the store at " + root + "; left as it is");
    NodeOnlyFiles.deleteTree(p);
  }

  /** A directory of this store, parsed: whose it is, and whether it is a fork's (the start of sandbox {@code sandboxId}). */
  public record Entry(Path dir, String sandboxId, boolean fork, java.time.Instant modified) {}

  /** What the store holds (directories named as this class makes them; anything else is left alone). Blocking. */
  public java.util.List<Entry> list() throws IOException {
    java.util.List<Entry> out = new java.util.ArrayList<>();
    if (!Files.isDirectory(root, LinkOption.NOFOLLOW_LINKS)) return out;
    try (var ds = Files.newDirectoryStream(root)) {
      for (Path p : ds) {
        String name = p.getFileName().toString();
        java.util.regex.Matcher m = NAME.matcher(name);
        if (!m.matches() || !Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) continue;
        out.add(new Entry(p, m.group(1), m.group(2).startsWith("fork-"),
            Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS).toInstant()));
      }
    }
    return out;
  }

  private static final java.util.regex.Pattern NAME = java.util.regex.Pattern.compile("(sb-[0-9a-f]{16})-([0-9]+|fork-[0-9a-f]{8})");

  /** {@code snapshot} as a direct child of the root, or null when it is anything else. */
  private Path inside(String snapshot) {
    if (snapshot == null || snapshot.isEmpty()) return null;
    Path p = Path.of(snapshot).toAbsolutePath().normalize();
    return root.equals(p.getParent()) ? p : null;
  }
}
