package dev.flotilla.vm;

import java.time.Instant;
import java.util.List;

/**
 * A driver's VM templates on this node (Kata's "VM templating"): a VM booted once and warmed, its
 * memory and device state saved, that later sandboxes of the same shape start from instead of
 * booting. Templates are node-local and belong to one tenant: no tenant's sandbox starts from
 * another tenant's memory. Blocking; callers run it off actor threads.
 */
public interface TemplateCatalog {

  /**
   * One template.
   *
   * @param id stable, node-unique; what {@link #remove} takes
   * @param tenant whose sandboxes start from it
   * @param image the image reference it was asked for ("" for the default image)
   * @param imageDigest the image's digest ("" for the default image)
   * @param vcpus the vCPUs a sandbox must ask for to start from it
   * @param memoryMiB the memory a sandbox must ask for to start from it
   * @param diskMiB the writable disk size a sandbox must have to start from it
   * @param bytes what it holds on the node (memory file and device state)
   * @param created when it was saved
   * @param lastUsed when a sandbox last started from it (created if never)
   * @param clones VMs running from it now on this node
   */
  record Template(String id, String tenant, String image, String imageDigest, int vcpus, int memoryMiB, int diskMiB,
      long bytes, Instant created, Instant lastUsed, int clones) {}

  /** What {@link #warm} builds a template for: the sandboxes of {@code tenant} with this image and size. */
  record WarmRequest(String tenant, String image, int vcpus, int memoryMiB) {}

  /** No such template of that tenant here. */
  final class NotFound extends VmException {
    public NotFound(String message) {
      super(message);
    }
  }

  /** A template that running VMs still start from: it stays until they end. */
  final class InUse extends VmException {
    public InUse(String message) {
      super(message);
    }
  }

  /** Builds the template for {@code request} (boots, warms, saves), or returns the one there already. */
  Template warm(WarmRequest request) throws VmException;

  /** The tenant's templates on this node, most recently used first. */
  List<Template> list(String tenant);

  /** Removes one of the tenant's templates; {@link InUse} while clones run from it, {@link NotFound} if none. */
  Template remove(String tenant, String id) throws VmException;
}
