package dev.flotilla.node.templates;

import com.typesafe.config.Config;
import dev.flotilla.sandbox.ImagePinning;
import dev.flotilla.sandbox.SpecValidator;
import dev.flotilla.vm.Hypervisor;
import dev.flotilla.vm.TemplateCatalog;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.Executor;

/**
 * This node's VM templates as the TemplateService serves them: the catalogs of the drivers that
 * have templates, and what a warm may ask for and take. Templates are node-local, so this is the
 * whole truth about them: no other node is asked.
 *
 * @param catalogs driver name to its templates, for the drivers on this node that have them
 * @param drivers every driver this node offers (to say which have templates when one has none)
 * @param sizes the bounds and defaults of a sandbox spec's vCPUs and memory: a template is only of
 *     use to sandboxes of a size they may have
 * @param images pins a warm's image for the caller's tenant as a create pins a sandbox's: the
 *     driver gets the reference a sandbox's spec will hold, and never an image the tenant cannot see
 * @param node this node's cluster address (host:port), as sandboxes name their node
 * @param blocking where warms, listings and removals run: they boot VMs and touch files
 * @param warmTimeout how long a warm may take before the caller is told UNAVAILABLE
 * @param maxConcurrentWarms warms this node runs at once: each boots a VM and holds a blocking
 *     thread for its whole boot, which sandbox starts need too
 */
public record NodeTemplates(Map<String, TemplateCatalog> catalogs, Set<String> drivers, SpecValidator sizes,
    ImagePinning images, String node, Executor blocking, Duration warmTimeout, int maxConcurrentWarms) {

  /** The driver a warm that names none is for. */
  public static final String DEFAULT_DRIVER = "qemu";

  public NodeTemplates {
    catalogs = Map.copyOf(catalogs);
    drivers = Set.copyOf(new TreeSet<>(drivers));
    if (maxConcurrentWarms < 1) {
      throw new IllegalArgumentException("flotilla.templates.max-concurrent-warms = " + maxConcurrentWarms + ": give 1 or more");
    }
  }

  /** From the node's drivers and {@code flotilla.templates}. */
  public static NodeTemplates of(Map<String, Hypervisor> drivers, SpecValidator sizes, ImagePinning images, String node,
      Executor blocking, Config templates) {
    Map<String, TemplateCatalog> catalogs = new LinkedHashMap<>();
    drivers.forEach((name, hv) -> hv.templates().ifPresent(c -> catalogs.put(name, c)));
    return new NodeTemplates(catalogs, drivers.keySet(), sizes, images, node, blocking, templates.getDuration("warm-timeout"),
        templates.getInt("max-concurrent-warms"));
  }

  /** The drivers with templates here, sorted, for messages. */
  public Set<String> withTemplates() {
    return new TreeSet<>(catalogs.keySet());
  }
}
