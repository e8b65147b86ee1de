// A Geant4 fast-simulation model whose decisions are taken in Python: the surrogate inside Geant4.
//
// Geant4 hands a particle that enters an envelope region to the models of the region's
// G4FastSimulationManager: each model says whether it applies to the particle type
// (IsApplicable), whether it takes this particle now (ModelTrigger), and then replaces its
// tracking (DoIt). Here ModelTrigger takes every electron, positron and photon whose momentum is
// above a threshold (decided in C++: Geant4 asks at every step of every particle in the region),
// and DoIt passes the particle's position, momentum and direction in the envelope's frame to Python
// (a ctypes function pointer), which records the particle whose shower the surrogate will deposit,
// then kills it (G4FastStep::KillPrimaryTrack), so Geant4 tracks nothing of it further.
//
// This is the one place where the project subclasses a Geant4 class without its header. What is
// assumed, and how each assumption is checked (at run time here, and by tests/simulate):
// - G4VFastSimulationModel: a virtual destructor, then the virtual functions IsApplicable,
//   ModelTrigger, DoIt, AtRestModelTrigger, AtRestDoIt, Flush in this order, and one data member,
//   the model's name (a G4String). Each slot counts its calls; a test runs events and checks that
//   Geant4 reached IsApplicable, ModelTrigger and DoIt, and Flush through FlushModels, and that no
//   call landed in a wrong slot. The manager finds the model by its name (GetFastSimulationModel),
//   which proves where the name lies.
// - G4FastSimulationManager keeps its models in a G4FastSimulationVector, a std::vector of model
//   pointers behind a virtual destructor; the wheel exports that vector's vtable, and the first word
//   of the manager equal to it marks the model list (the inline AddFastSimulationModel is not in
//   the wheel). The lookup by name after the insertion proves the list was the right one.
// - G4FastTrack begins with the current track, a flag, the envelope region, a flag, three pointers
//   (the envelope's volumes and solid), then the particle's local position, momentum and direction
//   (three doubles each), all filled before ModelTrigger is called. (An older header shows two
//   pointers there; Geant4 11.4 has three: a momentum read one word early came out wrong.) Every
//   call checks that the envelope read there is the model's region; Python checks that the momentum
//   read gives the energy the gun shot (nothing lies between the gun and the envelope) and that the
//   direction is a unit vector.
#include <vector>

#include "declarations.hpp"

class G4Region;
class G4FastTrack;
class G4FastStep { public: void KillPrimaryTrack(); };
class G4RegionStore {
 public:
  static G4RegionStore* GetInstance();
  G4Region* GetRegion(const G4String& name, bool verbose) const;
};

class G4VFastSimulationModel {
 public:
  explicit G4VFastSimulationModel(const char* name) : name_(name) {}
  virtual ~G4VFastSimulationModel() {}
  virtual bool IsApplicable(const G4ParticleDefinition&) = 0;
  virtual bool ModelTrigger(const G4FastTrack&) = 0;
  virtual void DoIt(const G4FastTrack&, G4FastStep&) = 0;
  virtual bool AtRestModelTrigger(const G4FastTrack&) { return false; }
  virtual void AtRestDoIt(const G4FastTrack&, G4FastStep&) {}
  virtual void Flush() {}

 private:
  G4String name_;
};

class G4FastSimulationManager {
 public:
  G4FastSimulationManager(G4Region* envelope, bool unique);
  bool ActivateFastSimulationModel(const G4String& name);
  bool InActivateFastSimulationModel(const G4String& name);
  G4VFastSimulationModel* GetFastSimulationModel(const G4String& name, const G4VFastSimulationModel* previous,
                                                 bool& found_previous) const;
  void FlushModels();
};

// The vtable of G4FastSimulationVector<G4VFastSimulationModel>, exported by the wheel.
extern "C" const void* const _ZTV22G4FastSimulationVectorI22G4VFastSimulationModelE[];

namespace {

// Receives the particle's state in the envelope's frame: position (mm), momentum (MeV), direction.
using Callback = int (*)(const double* state);

// The leading members of G4FastTrack, in their declaration order.
struct FastTrackView {
  const void* track;
  bool affine_transformation_defined;
  const G4Region* envelope;
  bool unique;
  const void* envelope_volumes_and_solid[3];
  double position[3];
  double momentum[3];
  double direction[3];
};

const G4Region* g_envelope = nullptr;
unsigned long g_layout_errors = 0;

// Position, momentum and direction of the particle, or false where the envelope read is not ours.
bool read_state(const G4FastTrack& fast_track, double* state) {
  const auto& view = reinterpret_cast<const FastTrackView&>(fast_track);
  if (view.envelope != g_envelope) {
    ++g_layout_errors;
    return false;
  }
  for (int i = 0; i < 3; ++i) {
    state[i] = view.position[i];
    state[3 + i] = view.momentum[i];
    state[6 + i] = view.direction[i];
  }
  return true;
}

enum Slot { kIsApplicable, kModelTrigger, kDoIt, kAtRestModelTrigger, kAtRestDoIt, kFlush, kSlots };

class SurrogateModel final : public G4VFastSimulationModel {
 public:
  SurrogateModel(const char* name, Callback shower) : G4VFastSimulationModel(name), shower_(shower) {}

  bool IsApplicable(const G4ParticleDefinition& p) override {
    ++calls[kIsApplicable];
    const void* q = &p;
    return q == G4Gamma::Gamma() || q == G4Electron::Electron() || q == G4Positron::Positron();
  }
  bool ModelTrigger(const G4FastTrack& fast_track) override {
    ++calls[kModelTrigger];
    double state[9];
    if (!read_state(fast_track, state)) return false;
    const double p2 = state[3] * state[3] + state[4] * state[4] + state[5] * state[5];
    return p2 >= threshold_momentum * threshold_momentum;
  }
  void DoIt(const G4FastTrack& fast_track, G4FastStep& step) override {
    ++calls[kDoIt];
    double state[9];
    if (read_state(fast_track, state)) shower_(state);
    step.KillPrimaryTrack();
  }
  bool AtRestModelTrigger(const G4FastTrack&) override {
    ++calls[kAtRestModelTrigger];
    return false;
  }
  void AtRestDoIt(const G4FastTrack&, G4FastStep&) override { ++calls[kAtRestDoIt]; }
  void Flush() override { ++calls[kFlush]; }

  unsigned long calls[kSlots] = {};
  double threshold_momentum = 1e300;  // MeV

 private:
  Callback shower_;
};

SurrogateModel* g_model = nullptr;
G4FastSimulationManager* g_manager = nullptr;
const char* const kName = "calosurrogate";

}  // namespace

extern "C" {

// Attach the model to the region named ``region`` (which must exist: call after the geometry is
// built). Returns 0, or: 1 no such region, 2 already attached, 3 the model list was not found in the
// manager, 4 the manager does not find the model by name afterwards.
int calo_g4fast_attach(const char* region, Callback shower) {
  if (g_model) return 2;
  G4Region* envelope = G4RegionStore::GetInstance()->GetRegion(G4String(region), false);
  if (!envelope) return 1;
  g_envelope = envelope;
  g_manager = calo::build<G4FastSimulationManager>(envelope, true);
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(g_manager);
  // the vector object starts with the address of its vtable's first virtual function (two words in)
  const void* vector_vptr = &_ZTV22G4FastSimulationVectorI22G4VFastSimulationModelE[2];
  const unsigned long used = calo::used_bytes(bytes);
  std::vector<G4VFastSimulationModel*>* models = nullptr;
  for (unsigned long offset = 0; offset + 32 <= used; offset += 8) {
    if (*reinterpret_cast<const void* const*>(bytes + offset) == vector_vptr) {
      models = reinterpret_cast<std::vector<G4VFastSimulationModel*>*>(const_cast<unsigned char*>(bytes) + offset + 8);
      break;
    }
  }
  if (!models || !models->empty()) return 3;
  g_model = new SurrogateModel(kName, shower);
  models->push_back(g_model);
  bool found_previous = false;
  if (g_manager->GetFastSimulationModel(G4String(kName), nullptr, found_previous) != g_model) return 4;
  return 0;
}

// Switch the model on (1) or off (0): off, the region's particles are tracked in full. On, it takes
// electrons, positrons and photons of momentum above ``threshold_momentum`` (MeV). Returns 1 when
// Geant4 found the model.
int calo_g4fast_set_active(int active, double threshold_momentum) {
  if (!g_manager || !g_model) return 0;
  g_model->threshold_momentum = threshold_momentum;
  return active ? g_manager->ActivateFastSimulationModel(G4String(kName))
                : g_manager->InActivateFastSimulationModel(G4String(kName));
}

// Calls that reached each virtual function: IsApplicable, ModelTrigger, DoIt, AtRestModelTrigger,
// AtRestDoIt, Flush (``counts`` holds six numbers).
void calo_g4fast_calls(unsigned long* counts) {
  for (int i = 0; i < kSlots; ++i) counts[i] = g_model ? g_model->calls[i] : 0;
}

// Calls that found another envelope where G4FastTrack's should be (0 when the layout holds).
unsigned long calo_g4fast_layout_errors() { return g_layout_errors; }

// Geant4's own call of every model's Flush (through the manager).
void calo_g4fast_flush() {
  if (g_manager) g_manager->FlushModels();
}
}
