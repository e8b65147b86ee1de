// Data-free electromagnetic physics for e+, e- and gamma, built against the Geant4 inside geant4-pybind.
//
// The wheel ships no headers and its Python bindings expose no single EM process or model, so this
// small library registers them. Its declarations are our own, written from the symbols the pinned
// wheel exports: constructors and non-virtual member functions only. Nothing here subclasses a Geant4
// class or calls a virtual function through these declarations, so no class layout is assumed
// except that G4String is a std::string (it adds no data member) and that each process and model
// derives from its base alone (single inheritance: one address for both).
//
// The list is Geant4's standard EM option 0 for gamma, e- and e+, less what reads data files:
//   gamma: photo-electric effect (G4PEEffectFluoModel), Compton scattering (Klein-Nishina),
//          conversion (G4PairProductionRelModel);
//   e-/e+: multiple scattering (Urban), ionisation (Moller-Bhabha), bremsstrahlung with the
//          relativistic model over the whole range (in place of Seltzer-Berger below 1 GeV);
//   e+:    annihilation.
// No fluorescence, Auger electrons or Rayleigh scattering.
#include "declarations.hpp"

enum G4ProcessType { fNotDefined, fTransportation, fElectromagnetic };

class G4VProcess;
class G4VEmModel;
class G4VMscModel;

class G4PhysicsListHelper {
 public:
  static G4PhysicsListHelper* GetPhysicsListHelper();
  void AddTransportation();
  bool RegisterProcess(G4VProcess* process, G4ParticleDefinition* particle);
};
class G4VEmProcess { public: void SetEmModel(G4VEmModel* model, int index); };
class G4VEnergyLossProcess { public: void SetEmModel(G4VEmModel* model, int index); };
class G4VMultipleScattering { public: void SetEmModel(G4VMscModel* model, int index); };

class G4PhotoElectricEffect { public: G4PhotoElectricEffect(const G4String&, G4ProcessType); };
class G4ComptonScattering { public: G4ComptonScattering(const G4String&, G4ProcessType); };
class G4GammaConversion { public: G4GammaConversion(const G4String&, G4ProcessType); };
class G4eMultipleScattering { public: G4eMultipleScattering(const G4String&); };
class G4eIonisation { public: G4eIonisation(const G4String&); };
class G4eBremsstrahlung { public: G4eBremsstrahlung(const G4String&); };
class G4eplusAnnihilation { public: G4eplusAnnihilation(const G4String&); };
class G4PEEffectFluoModel { public: G4PEEffectFluoModel(const G4String&); };
class G4KleinNishinaCompton { public: G4KleinNishinaCompton(const G4ParticleDefinition*, const G4String&); };
class G4PairProductionRelModel { public: G4PairProductionRelModel(const G4ParticleDefinition*, const G4String&); };
class G4UrbanMscModel { public: G4UrbanMscModel(const G4String&); };
class G4eBremsstrahlungRelModel { public: G4eBremsstrahlungRelModel(const G4ParticleDefinition*, const G4String&); };

using calo::build;
using calo::particle;
unsigned long calo::largest_used = 0;

static G4VProcess* process(void* p) { return static_cast<G4VProcess*>(p); }

extern "C" {

// Largest number of bytes any constructor wrote into its block (a test checks it stays below kBlock).
unsigned long calo_g4em_largest_object() { return calo::largest_used; }
unsigned long calo_g4em_block_size() { return calo::kBlock; }

// Transportation for every particle, then the processes of e+, e- and gamma; call from ConstructProcess.
int calo_g4em_construct() {
  G4PhysicsListHelper* helper = G4PhysicsListHelper::GetPhysicsListHelper();
  G4ParticleDefinition* gamma = particle(G4Gamma::Gamma());
  G4ParticleDefinition* electron = particle(G4Electron::Electron());
  G4ParticleDefinition* positron = particle(G4Positron::Positron());
  if (!helper || !gamma || !electron || !positron) return 1;
  helper->AddTransportation();

  auto* photo = build<G4PhotoElectricEffect>(G4String("phot"), fElectromagnetic);
  reinterpret_cast<G4VEmProcess*>(photo)->SetEmModel(reinterpret_cast<G4VEmModel*>(build<G4PEEffectFluoModel>(G4String("PhotoElectric"))), 0);
  auto* compton = build<G4ComptonScattering>(G4String("compt"), fElectromagnetic);
  reinterpret_cast<G4VEmProcess*>(compton)->SetEmModel(reinterpret_cast<G4VEmModel*>(build<G4KleinNishinaCompton>(nullptr, G4String("Klein-Nishina"))), 0);
  auto* conversion = build<G4GammaConversion>(G4String("conv"), fElectromagnetic);
  reinterpret_cast<G4VEmProcess*>(conversion)->SetEmModel(reinterpret_cast<G4VEmModel*>(build<G4PairProductionRelModel>(nullptr, G4String("BetheHeitlerLPM"))), 0);
  bool ok = helper->RegisterProcess(process(photo), gamma);
  ok = helper->RegisterProcess(process(compton), gamma) && ok;
  ok = helper->RegisterProcess(process(conversion), gamma) && ok;

  G4ParticleDefinition* charged[2] = {electron, positron};
  for (int i = 0; i < 2; ++i) {
    auto* msc = build<G4eMultipleScattering>(G4String("msc"));
    reinterpret_cast<G4VMultipleScattering*>(msc)->SetEmModel(reinterpret_cast<G4VMscModel*>(build<G4UrbanMscModel>(G4String("UrbanMsc"))), 0);
    auto* ionisation = build<G4eIonisation>(G4String("eIoni"));
    auto* brems = build<G4eBremsstrahlung>(G4String("eBrem"));
    // the relativistic model below and above 1 GeV: Seltzer-Berger, the default below, reads data files
    auto* brems_ = reinterpret_cast<G4VEnergyLossProcess*>(brems);
    brems_->SetEmModel(reinterpret_cast<G4VEmModel*>(build<G4eBremsstrahlungRelModel>(nullptr, G4String("eBremLPM"))), 0);
    brems_->SetEmModel(reinterpret_cast<G4VEmModel*>(build<G4eBremsstrahlungRelModel>(nullptr, G4String("eBremLPM"))), 1);
    ok = helper->RegisterProcess(process(msc), charged[i]) && ok;
    ok = helper->RegisterProcess(process(ionisation), charged[i]) && ok;
    ok = helper->RegisterProcess(process(brems), charged[i]) && ok;
  }
  ok = helper->RegisterProcess(process(build<G4eplusAnnihilation>(G4String("annihil"))), positron) && ok;
  return ok ? 0 : 2;
}
}
