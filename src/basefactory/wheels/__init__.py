"""The wheel factory: recipe -> source -> build -> repair -> relabel -> test -> upload."""
