"""The sandbox's Flower App Bundle (FAB): entry points only, the code is the installed sandbox."""
