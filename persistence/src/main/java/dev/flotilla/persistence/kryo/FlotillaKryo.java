package dev.flotilla.persistence.kryo;

import com.esotericsoftware.kryo.Kryo;
import com.esotericsoftware.kryo.KryoException;
import com.esotericsoftware.kryo.Registration;
import com.esotericsoftware.kryo.io.Input;
import com.esotericsoftware.kryo.util.DefaultClassResolver;

/**
 * A Kryo that only ever speaks in registered ids.
 *
 * <p>Concrete classes we cannot name in config (actor ref implementations, ByteString's inner
 * classes, constant-specific enum bodies) are mapped onto the registration of the public type they
 * implement, so the bytes carry the id of the stable public type only.
 */
final class FlotillaKryo extends Kryo {

  FlotillaKryo() {
    super(new StrictClassResolver(), null);
    setRegistrationRequired(true);
    setReferences(false);
    setWarnUnregisteredClasses(false);
  }

  @Override
  public Registration getRegistration(Class type) {
    Registration direct = getClassResolver().getRegistration(type);
    if (direct != null) {
      return direct;
    }
    Class<?> alias = Builtins.aliasFor(type);
    if (alias != null) {
      Registration r = getClassResolver().getRegistration(alias);
      if (r != null) {
        return r;
      }
    }
    // Kryo maps wrappers to primitives and reports unregistered classes via unregisteredClassMessage.
    return super.getRegistration(type);
  }

  @Override
  protected String unregisteredClassMessage(Class type) {
    return unregisteredMessage(type);
  }

  static String unregisteredMessage(Class<?> type) {
    String name = type.getName();
    return "Class is not registered for Kryo serialization: "
        + name
        + ". Flotilla never serializes unregistered classes. Register it in the owning module's"
        + " reference.conf under "
        + KryoRegistry.CLASSES_PATH
        + " { \""
        + name
        + "\" = <unused id from that module's block> } (ids are forever: never reuse or change one).";
  }

  /** Rejects class names in payloads: we only accept ids, so bytes cannot choose a class to load. */
  static final class StrictClassResolver extends DefaultClassResolver {
    @Override
    protected Registration readName(Input input) {
      throw new KryoException(
          "Payload names a class by its name instead of a registered id; refusing to load classes"
              + " chosen by the bytes. Was it written by something other than Flotilla's KryoSerializer?");
    }

    @Override
    public Registration readClass(Input input) {
      try {
        return super.readClass(input);
      } catch (KryoException e) {
        String msg = String.valueOf(e.getMessage());
        if (msg.startsWith("Encountered unregistered class ID")) {
          throw new KryoException(
              msg
                  + ": no class is registered under that id in "
                  + KryoRegistry.CLASSES_PATH
                  + ". A registration was removed or renumbered, or the module that owns the id is"
                  + " not on the classpath. Ids are forever: restore the registration.",
              e);
        }
        throw e;
      }
    }
  }
}
