package dev.flotilla.vm;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * Where a driver gets an image's root file system on this host: its unpacked layers (shared,
 * read-only) and the defaults of every process in it. Provided by the node (which owns the image
 * store); blocking (it may pull or unpack), so drivers call it from {@code prepare}/{@code start}.
 */
@FunctionalInterface
public interface ImageRootfs {

  /**
   * @param pinnedImage a reference pinned to its manifest digest ({@link VmSpec#IMAGE})
   * @param owner the tenant the image is looked up for
   * @param sandboxId the sandbox that will run it: the image stays on this host until {@link #released}
   * @throws VmException when the image cannot be had here, saying why
   */
  Rootfs resolve(String pinnedImage, String owner, String sandboxId) throws VmException;

  /** The sandbox has no state left on this host: its image may be evicted. */
  default void released(String sandboxId) {}

  /**
   * @param layersTopFirst overlayfs lower directories, the top layer first
   * @param env the image's {@code Env} as NAME → value
   * @param workingDir the image's {@code WorkingDir}, empty for none
   * @param user the image's {@code User}, empty for root
   */
  record Rootfs(List<Path> layersTopFirst, Map<String, String> env, String workingDir, String user) {
    public Rootfs {
      layersTopFirst = List.copyOf(layersTopFirst);
      env = Map.copyOf(env);
      workingDir = workingDir == null ? "" : workingDir;
      user = user == null ? "" : user;
    }

    /**
     * The guest agent's {@code --exec-defaults} file: {@code env.NAME=}, {@code workingDir=},
     * {@code user=} as a properties text (UTF-8), written by the node, read by the agent once.
     */
    public String execDefaults() {
      java.util.Properties p = new java.util.Properties();
      env.forEach((k, v) -> p.setProperty("env." + k, v));
      p.setProperty("workingDir", workingDir);
      p.setProperty("user", user);
      java.io.StringWriter w = new java.io.StringWriter();
      try {
        p.store(w, null);
      } catch (java.io.IOException e) {
        throw new java.io.UncheckedIOException(e); // a StringWriter does not fail
      }
      // the same bytes for the same image (a VM template is keyed by them): no date line, sorted
      // entries (store escapes each onto one line)
      return "# the image's exec defaults\n" + w.toString().lines().filter(l -> !l.startsWith("#")).sorted()
          .collect(java.util.stream.Collectors.joining("\n", "", "\n"));
    }
  }

  /** No image store: only the driver's default image runs. */
  ImageRootfs NONE = (image, owner, sandboxId) -> {
    throw new VmException("this node has no image store: image " + image + " cannot run here");
  };
}
