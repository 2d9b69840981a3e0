/* placeholder: filled by the component owner */
